"""Bulk writes through the auto-pipeline (store/batch.py) as the served process makes them: a
first seed that assumes its records are new still keeps what the API made before it, claims
every key, and answers like redis-py's pipeline does. On the embedded server, the external
one when set, and the local Cluster; with the auto-pipeline and without."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gatekeeper.config import parse_config
from gatekeeper.directory.seed import reconcile_directory
from gatekeeper.store.batch import is_error, run_batch
from gatekeeper.store.connection import autopipeline_of, connect_redis
from gatekeeper.store.customers import CustomerRecord, CustomerRecords, RecordChange, Source
from gatekeeper.store.keys import KeySpace
from tests.conftest import RedisTarget, redis_target_of, redis_targets
from tests.directory.test_seed import HEAD


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(params=redis_targets(cluster=True))
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    return redis_target_of(request, request.param)


@pytest.fixture(params=["autopipeline", "redis-py"])
async def client(
    request: pytest.FixtureRequest, redis_target: RedisTarget, redis: Redis
) -> AsyncIterator[Redis]:
    """A client as serve makes it (`redis` is the fixture that deletes the test's keys)."""
    settings = dataclasses.replace(
        redis_target.settings, autopipeline=request.param == "autopipeline"
    )
    made = connect_redis(redis_target.url, settings)
    assert (autopipeline_of(made) is not None) == (request.param == "autopipeline")
    try:
        yield made
    finally:
        await made.aclose()


async def test_a_first_seed_keeps_what_the_api_made_before_it(
    client: Redis, key_prefix: str
) -> None:
    keys = KeySpace(prefix=key_prefix, partitions=4)
    records = CustomerRecords(redis=client, keys=keys)
    api_doc = {"plan": "pro", "api_keys": [{"id": "k0", "sha256": sha("b-api")}]}

    def made_by_api(before: CustomerRecord | None) -> RecordChange[None]:
        return RecordChange(None, CustomerRecord("b", api_doc, Source.API))

    await records.change("b", made_by_api, channel=keys.invalidate_channel())
    lines = "".join(
        f"  {c}: {{plan: free, api_keys: [{{id: k0, sha256: {sha(c)}}}]}}\n"
        for c in ["a", "b", *(f"c{i}" for i in range(300))]
    )
    root = parse_config(HEAD + lines, env={}).root
    result = await reconcile_directory(
        redis=client, keys=keys, records=records, root=root, updated_at="t"
    )
    assert not result.skipped and result.written == 301 and not result.refused
    b = await records.get("b")
    assert b is not None and b.source is Source.API and b.doc == api_doc  # the API's, kept
    assert await records.owner_of_key(sha("b-api")) == "b"
    for customer in ("a", "c0", "c299"):
        record = await records.get(customer)
        assert record is not None and record.source is Source.FILE
        assert await records.owner_of_key(sha(customer)) == customer
    assert await records.count() == 302
    again = await reconcile_directory(
        redis=client, keys=keys, records=records, root=root, updated_at="t"
    )
    assert again.skipped


async def test_replies_are_resp_values_on_both_paths(client: Redis, key_prefix: str) -> None:
    key, other = f"{key_prefix}:{{x}}:a", f"{key_prefix}:{{x}}:b"
    await client.hset(other, "f", "v")
    replies = await run_batch(
        client,
        [
            (("SET", key, "1", "NX"), key),
            (("SET", key, "2", "NX"), key),
            (("HMGET", other, "f", "g"), other),
            (("EVALSHA", "0" * 40, 1, key), key),
            (("INCR", other), other),
        ],
    )
    assert replies[:3] == [b"OK", None, [b"v", None]]
    assert is_error(replies[3], "NOSCRIPT") and not is_error(replies[3], "WRONGTYPE")
    assert is_error(replies[4], "WRONGTYPE")
    assert await run_batch(client, []) == []
