"""Trimming never removes an entry that any consumer group still needs."""

from __future__ import annotations

from redis.asyncio import Redis

from gatekeeper.billing import BillingStore
from gatekeeper.pipeline.streams import trim_bound
from gatekeeper.store.consumers import read_group
from gatekeeper.store.groups import ensure_group
from tests.pipeline.support import harness, keyspace, make_worker, run_decisions


async def test_trim_stops_at_the_oldest_entry_another_group_still_needs(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await run_decisions(h, 200)
    streams = [s for s in keyspace(key_prefix).all_usage_streams() if await redis.xlen(s)]
    stream = streams[0]
    entries = await redis.xrange(stream)
    assert await trim_bound(redis, stream) is None  # no group yet: never trim
    # another group (a forwarder) has read 10 entries and acknowledged the first 4
    await ensure_group(redis, stream, "forwarder")
    got = await read_group(redis, "forwarder", "f1", [stream], count=10, block_ms=None)
    await redis.xack(stream, "forwarder", *[e.id for e in got[:4]])
    worker = make_worker(redis, store, key_prefix)
    await worker.drain()  # billing has acknowledged everything
    others = sum([await redis.xlen(s) for s in streams[1:]])
    removed = await worker.trim_once()
    assert removed == 4 + others  # streams only billing reads are trimmed entirely
    left = await redis.xrange(stream)
    assert [i for i, _ in left] == [i for i, _ in entries[4:]]
    # a group with nothing pending keeps what it has not been delivered yet
    await redis.xack(stream, "forwarder", *[e.id for e in got[4:]])
    assert await worker.trim_once() == 6
    assert [i for i, _ in await redis.xrange(stream)] == [i for i, _ in entries[10:]]
    for other in streams[1:]:
        assert await redis.xlen(other) == 0
    # entries billing has not read yet survive a trim (the acknowledged ones go)
    before = await redis.xlen(stream)
    await run_decisions(h, 20, seed=5)
    unread = await redis.xlen(stream) - before
    assert unread > 0
    await redis.xgroup_destroy(stream, "forwarder")
    await worker.trim_once()
    assert await redis.xlen(stream) == unread
