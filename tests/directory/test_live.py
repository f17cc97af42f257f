"""LiveDirectory over a real Redis: a bounded cache, one round trip per miss shared by
concurrent misses, per-customer invalidation, lazy recompilation under a new catalog, key
pointers with a short memory of unknown keys."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
from typing import Any

from redis.asyncio import Redis

from gatekeeper.config import parse_config
from gatekeeper.directory.live import LiveDirectory
from gatekeeper.model import Customer, Policy, frozen_map
from gatekeeper.store.customers import CustomerRecord, CustomerRecords, Source
from gatekeeper.store.keys import KeySpace
from tests.conftest import also_on_cluster

CATALOG = parse_config(
    """
version: 1
currency: USD
features:
  api_access: {type: boolean}
  calls: {type: metered, unit: call}
plans:
  free: {entitlements: {api_access: true, calls: {limit: 10, period: day}}}
  pro: {entitlements: {api_access: true, calls: {limit: 1000, period: day}}}
""",
    env={},
).policy


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def _setup(
    redis: Redis, prefix: str, n: int = 3, capacity: int = 100, compiled: int = 100
) -> tuple[CustomerRecords, LiveDirectory, list[float]]:
    records = CustomerRecords(redis=redis, keys=KeySpace(prefix=prefix, partitions=4))
    docs = [
        CustomerRecord(
            f"c{i}", {"plan": "free", "api_keys": [{"id": "k", "sha256": _sha(f"key-{i}")}]}
        )
        for i in range(n)
    ]
    await records.put_many(docs, channel=f"{prefix}:invalidate")
    clock = [0.0]
    directory = LiveDirectory(
        catalog=CATALOG,
        records=records,
        capacity=capacity,
        compiled_capacity=compiled,
        monotonic=lambda: clock[0],
    )
    return records, directory, clock


def _count_gets(records: CustomerRecords) -> list[str]:
    """The customers the directory reads from Redis from now on."""
    calls: list[str] = []
    original = records.get_stored

    async def counted(customer: str) -> Any:
        calls.append(customer)
        return await original(customer)

    records.get_stored = counted  # type: ignore[method-assign]
    return calls


@also_on_cluster()
async def test_a_miss_is_one_read_shared_by_concurrent_callers(
    redis: Redis, key_prefix: str
) -> None:
    records, directory, _ = await _setup(redis, key_prefix)
    calls = _count_gets(records)
    assert directory.cached_customer("c1") is None  # nothing held yet
    found = await asyncio.gather(*(directory.customer("c1") for _ in range(20)))
    assert calls == ["c1"] and all(c is found[0] and c is not None for c in found)
    assert directory.cached_customer("c1") is found[0]  # held now: no I/O
    assert await directory.customer("nobody") is None
    assert await directory.customer("nobody") is None and calls == ["c1", "nobody"]


async def test_what_a_process_holds_is_bounded(redis: Redis, key_prefix: str) -> None:
    _, directory, _ = await _setup(redis, key_prefix, n=30, capacity=10)
    for i in range(30):
        assert await directory.customer(f"c{i}") is not None
    stats = directory.stats()
    assert stats.size == 10 and stats.evictions == 20 and stats.capacity == 10


@also_on_cluster()
async def test_a_change_is_seen_after_its_invalidation(redis: Redis, key_prefix: str) -> None:
    records, directory, _ = await _setup(redis, key_prefix)
    before = await directory.customer("c0")
    assert before is not None and before.plan == "free"
    await records.put_many(
        [CustomerRecord("c0", {"plan": "pro"}, Source.API)], channel=f"{key_prefix}:invalidate"
    )
    assert directory.cached_customer("c0") is before  # no message yet: the held copy
    directory.invalidate("c0")
    after = await directory.customer("c0")
    assert after is not None and after.plan == "pro"
    assert await directory.key_owner(_sha("key-0")) is None  # the key went with the change


async def test_a_new_catalog_recompiles_each_customer_when_next_asked(
    redis: Redis, key_prefix: str
) -> None:
    records, directory, _ = await _setup(redis, key_prefix)
    calls = _count_gets(records)
    first = await directory.customer("c2")
    assert first is not None and first.entitlements.metered["calls"].limit == 10
    free = dataclasses.replace(
        CATALOG.plans["free"],
        metered=frozen_map(
            {"calls": dataclasses.replace(CATALOG.plans["free"].metered["calls"], limit=20)}
        ),
    )
    catalog: Policy = dataclasses.replace(
        CATALOG, plans=frozen_map({**CATALOG.plans, "free": free})
    )
    directory.set_catalog(catalog)
    again = directory.cached_customer("c2")
    assert again is not None and again is not first
    assert again.entitlements.metered["calls"].limit == 20
    assert calls == ["c2"]  # compiled again from the held record, not read again


@also_on_cluster()
async def test_keys_resolve_and_unknown_keys_are_remembered_briefly(
    redis: Redis, key_prefix: str
) -> None:
    records, directory, clock = await _setup(redis, key_prefix)
    owner = await directory.key_owner(_sha("key-1"))
    assert owner is not None and owner[0].id == "c1" and owner[1].id == "k"
    assert directory.cached_key_owner(_sha("key-1")) == owner
    late = _sha("created-later")
    assert await directory.key_owner(late) is None
    await records.put_many(
        [CustomerRecord("c9", {"plan": "free", "api_keys": [{"id": "n", "sha256": late}]})],
        channel=f"{key_prefix}:invalidate",
    )
    assert await directory.key_owner(late) is None  # remembered as unknown for a moment
    clock[0] += 1.5
    found = await directory.key_owner(late)
    assert found is not None and found[0].id == "c9"


async def test_a_record_that_no_longer_compiles_is_refused_not_fatal(
    redis: Redis, key_prefix: str
) -> None:
    records, directory, _ = await _setup(redis, key_prefix)
    await records.put_many(
        [CustomerRecord("odd", {"plan": "gone"})], channel=f"{key_prefix}:invalidate"
    )
    assert await directory.customer("odd") is None
    assert directory.stats().compile_failures == 1
    assert (await directory.record("odd")) is not None  # kept for an operator to fix


async def test_customers_past_the_compiled_tier_are_held_as_records(
    redis: Redis, key_prefix: str
) -> None:
    """The cache holds 20 records, 4 of them compiled: the other 16 are compiled again from
    memory (no read), a change drops both tiers, and the collector tracks none of them."""
    records, directory, _ = await _setup(redis, key_prefix, n=20, capacity=20, compiled=4)
    first = {
        c.id: c.entitlements for c in [await directory.customer(f"c{i}") for i in range(20)] if c
    }
    assert await directory.key_owner(_sha("key-3")) is not None  # its pointer, held
    calls = _count_gets(records)
    for _ in range(2):
        for i in range(20):
            again = directory.cached_customer(f"c{i}")
            assert again is not None and again.entitlements == first[f"c{i}"]
        owner = directory.cached_key_owner(_sha("key-3"))
        assert owner is not None and owner[0].id == "c3"
    assert calls == []
    stats = directory.stats()
    assert (stats.size, stats.capacity, stats.misses) == (20, 20, 20)
    assert not gc.is_tracked(again) and not gc.is_tracked(again.entitlements)
    del again, owner
    gc.collect()
    tracked = sum(1 for o in gc.get_objects() if isinstance(o, Customer) and o.id in first)
    assert tracked == 0  # compiled customers are off the collector's lists (untrack.py)

    await records.put_many(
        [CustomerRecord("c5", {"plan": "pro"}, Source.API)], channel=f"{key_prefix}:invalidate"
    )
    held = directory.cached_customer("c5")  # held, as a record or compiled
    assert held is not None and held.plan == "free"
    directory.invalidate("c5")
    assert directory.cached_customer("c5") is None
    changed = await directory.customer("c5")
    assert changed is not None and changed.plan == "pro" and calls == ["c5"]
