"""The one stream-consumer reader (store/consumers.py): heartbeats, take-over of dead consumers
(and only dead ones), removal of empty dead consumers, touch that never takes back. Real Redis:
embedded (6.2), external (7.x) when set, and the local Cluster (streams on every primary)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from gatekeeper.store.consumers import Entry, GroupConsumer, Liveness
from gatekeeper.store.keys import KeySpace
from tests.conftest import RedisTarget, redis_target_of, redis_targets

GROUP = "g"
# 4 partitions: on the test Cluster their streams sit on all three primaries
PARTITIONS = 4


@pytest.fixture(params=redis_targets(cluster=True))
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    return redis_target_of(request, request.param)


def consumer(
    redis: Redis, prefix: str, name: str, liveness: Liveness | None = None
) -> GroupConsumer:
    keys = KeySpace(prefix=prefix, partitions=PARTITIONS)
    return GroupConsumer(
        redis=redis, keys=keys, group=GROUP, consumer=name,
        streams=keys.all_usage_streams(), liveness=liveness,
    )  # fmt: skip


async def fill(redis: Redis, c: GroupConsumer, per_stream: int) -> list[tuple[str, str]]:
    """`per_stream` new entries in each stream; their refs (ids repeat across streams)."""
    await c.ensure_groups()
    refs = []
    for stream in c.streams:
        for i in range(per_stream):
            refs.append((stream, (await redis.xadd(stream, {"n": str(i)})).decode()))
    return sorted(refs)


async def members(redis: Redis, c: GroupConsumer) -> set[str]:
    names = set()
    for stream in c.streams:
        names |= {r["name"].decode() for r in await redis.xinfo_consumers(stream, GROUP)}
    return names


def ids(entries: list[Entry]) -> list[tuple[str, str]]:
    return sorted(e.ref for e in entries)


async def test_a_live_consumers_entries_are_never_taken_a_stopped_ones_at_once(
    redis: Redis, key_prefix: str
) -> None:
    a = consumer(redis, key_prefix, "a")
    b = consumer(redis, key_prefix, "b")
    added = await fill(redis, a, 3)
    async with a.alive():
        held = await a.read(count=10, block_ms=None)
        assert ids(held) == added
        assert await b.take_over(100) == []  # alive: heartbeat "1"
        assert await b.reclaim(60_000, 100) == []  # and not idle for long
    # a stopped: its heartbeat says so; b takes everything over, a leaves the group
    got = await b.take_over(100)
    assert ids(got) == added and all(e.fields for e in got)
    assert b.taken_over == len(added) and b.released == len(a.streams)
    assert await members(redis, b) == {"b"}
    assert ids(await b.own_pending(2)) == added  # now b's, paged by 2
    assert await b.ack([e.ref for e in got]) == len(added)


async def test_a_silent_consumer_is_taken_over_once_its_heartbeat_expired(
    redis: Redis, key_prefix: str
) -> None:
    quick = Liveness(ttl_ms=300, beat_interval_s=0.1, check_interval_s=0.05)
    a = consumer(redis, key_prefix, "a", quick)
    b = consumer(redis, key_prefix, "b", quick)
    added = await fill(redis, a, 2)
    await a.beat()  # then "killed": no stop mark, the heartbeat just runs out
    assert len(await a.read(count=10, block_ms=None)) == len(added)
    assert await b.take_over(100) == []
    await asyncio.sleep(0.35)
    assert ids(await b.take_over(100)) == added


async def test_a_consumer_that_never_kept_a_heartbeat_is_never_taken_for_dead(
    redis: Redis, key_prefix: str
) -> None:
    """An older gatekeeper (no heartbeat) during a rolling upgrade: its entries are reclaimed
    only once idle for the caller's min-idle time, as before."""
    quick = Liveness(ttl_ms=300, beat_interval_s=0.1, check_interval_s=0.05)
    old = consumer(redis, key_prefix, "old")
    b = consumer(redis, key_prefix, "b", quick)
    added = await fill(redis, old, 1)
    assert len(await old.read(count=10, block_ms=None)) == len(added)
    await asyncio.sleep(0.35)  # longer than the heartbeat TTL
    assert await b.take_over(100) == []
    assert "old" in await members(redis, b)
    assert ids(await b.reclaim(300, 100)) == added  # idle >= min-idle: reclaimed


async def test_take_over_is_bounded_and_removes_a_consumer_only_once_empty(
    redis: Redis, key_prefix: str
) -> None:
    a = consumer(redis, key_prefix, "a")
    b = consumer(redis, key_prefix, "b")
    added = await fill(redis, a, 5)
    await a.read(count=10, block_ms=None)
    await a.mark_stopped()
    first = await b.take_over(7)
    assert 7 <= len(first) < len(added)  # a bounded page (one stream's page may finish)
    assert "a" in await members(redis, b)  # it still holds entries somewhere
    rest: list[Entry] = []
    for _ in range(10):
        page = await b.take_over(7)
        if not page:
            break
        rest.extend(page)
    assert ids(first + rest) == added
    assert await members(redis, b) == {"b"}


async def test_an_entry_deleted_while_pending_comes_back_without_fields(
    redis: Redis, key_prefix: str
) -> None:
    a = consumer(redis, key_prefix, "a")
    b = consumer(redis, key_prefix, "b")
    added = await fill(redis, a, 2)
    held = await a.read(count=10, block_ms=None)
    gone = held[0]
    await redis.xdel(gone.stream, gone.id)
    await a.mark_stopped()
    got = {e.ref: e for e in await b.take_over(100)}
    assert sorted(got) == added
    assert not got[gone.ref].fields and all(e.fields for r, e in got.items() if r != gone.ref)
    await b.ack([e.ref for e in got.values()])  # 6.2 left it pending at b: acked, all clear
    for stream in b.streams:
        assert (await redis.xpending(stream, GROUP))["pending"] == 0
    assert await members(redis, b) == {"b"}


async def test_touch_keeps_what_it_holds_and_never_takes_back(
    redis: Redis, key_prefix: str
) -> None:
    a = consumer(redis, key_prefix, "a")
    b = consumer(redis, key_prefix, "b")
    added = await fill(redis, a, 1)
    held = await a.read(count=10, block_ms=None)
    await asyncio.sleep(0.05)
    assert await a.touch([e.ref for e in held]) == []
    stream = held[0].stream
    idle = (await redis.xpending_range(stream, GROUP, min="-", max="+", count=1))[0]
    assert int(idle["time_since_delivered"]) < 50  # fresh again
    await a.mark_stopped()  # taken for dead (a long pause), then it wakes up
    assert len(await b.take_over(100)) == len(added)
    assert sorted(await a.touch([e.ref for e in held])) == sorted(e.ref for e in held)
    for entry in held:
        rows = await redis.xpending_range(entry.stream, GROUP, entry.id, entry.id, 1)
        assert rows[0]["consumer"] == b"b"


async def test_alive_beats_and_marks_stopped(redis: Redis, key_prefix: str) -> None:
    quick = Liveness(ttl_ms=300, beat_interval_s=0.05, check_interval_s=0.05)
    a = consumer(redis, key_prefix, "a", quick)
    key = KeySpace(prefix=key_prefix).consumer_heartbeat(GROUP, "a")
    async with a.alive():
        for _ in range(8):  # renewed well within its 300 ms
            await asyncio.sleep(0.05)
            assert await redis.get(key) == b"1"
    assert await redis.get(key) == b"0"
    assert 0 < await redis.pttl(key) <= 300


def test_liveness_rejects_a_ttl_that_beats_cannot_keep() -> None:
    with pytest.raises(ValueError):
        Liveness(ttl_ms=1000, beat_interval_s=1.0)
