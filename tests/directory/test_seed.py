"""The policy file's customers reconciled into the directory: written where missing or changed,
the API's changes and deletions kept, dropped from the file = dropped from the directory,
an unchanged file = nothing to do."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from gatekeeper.config import parse_config
from gatekeeper.directory.seed import reconcile_directory
from gatekeeper.store.customers import CustomerRecord, CustomerRecords, RecordChange, Source
from gatekeeper.store.keys import KeySpace
from tests.conftest import also_on_cluster

HEAD = """
version: 1
currency: USD
features:
  api_access: {type: boolean}
plans:
  free: {entitlements: {api_access: true}}
  pro: {entitlements: {api_access: true}}
customers:
"""


def _root(customers: str):  # type: ignore[no-untyped-def]
    return parse_config(HEAD + customers, env={}).root


async def _seed(records: CustomerRecords, redis: Redis, keys: KeySpace, customers: str) -> bool:
    result = await reconcile_directory(
        redis=redis, keys=keys, records=records, root=_root(customers), updated_at="t"
    )
    return result.skipped


@also_on_cluster()
async def test_the_file_seeds_and_the_api_wins(redis: Redis, key_prefix: str) -> None:
    keys = KeySpace(prefix=key_prefix, partitions=4)
    records = CustomerRecords(redis=redis, keys=keys)
    first = "  a: {plan: free}\n  b: {plan: free}\n  c: {plan: free}\n  d: {plan: free}\n"
    assert not await _seed(records, redis, keys, first)
    assert await records.count() == 4 and (await records.get("a")).source is Source.FILE  # type: ignore[union-attr]
    assert await _seed(records, redis, keys, first)  # unchanged file: skipped

    def to_pro(before: CustomerRecord | None) -> RecordChange[None]:
        assert before is not None
        return RecordChange(None, CustomerRecord("b", {"plan": "pro"}, Source.API))

    channel = keys.invalidate_channel()
    await records.change("b", to_pro, channel=channel)  # changed through the API
    await records.forget_seed("c", removed=True)  # deleted through the API
    await records.change("c", lambda before: RecordChange(None, None), channel=channel)

    second = "  a: {plan: pro}\n  b: {plan: free}\n  c: {plan: free}\n  e: {plan: free}\n"
    assert not await _seed(records, redis, keys, second)
    a, b, c = [await records.get(x) for x in "abc"]
    assert a is not None and b is not None
    assert a.doc["plan"] == "pro" and a.source is Source.FILE  # the file's change applies
    assert b.doc["plan"] == "pro" and b.source is Source.API  # the API's change is kept
    assert c is None  # deleted through the API: not brought back
    assert await records.get("d") is None  # no longer in the file
    assert await records.get("e") is not None


@also_on_cluster()
async def test_processes_starting_together_seed_once(redis: Redis, key_prefix: str) -> None:
    keys = KeySpace(prefix=key_prefix, partitions=4)
    records = CustomerRecords(redis=redis, keys=keys)
    customers = "".join(f"  c{i}: {{plan: free}}\n" for i in range(300))
    root = _root(customers)
    results = await asyncio.gather(
        *(
            reconcile_directory(redis=redis, keys=keys, records=records, root=root, updated_at="t")
            for _ in range(4)
        )
    )
    assert sorted(r.skipped for r in results) == [False, True, True, True]
    assert sum(r.written for r in results) == 300 and await records.count() == 300
