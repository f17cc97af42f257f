"""The Redis counters: key layout, TTL on the first increment only, per-slot calls."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from gatekeeper.ratelimit import Counter, RedisCounterStore, descriptor_key
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.localcluster import LocalCluster
from tests.conftest import RedisTarget


def counter(value: str, hits: int = 1, window: int = 60, start: int = 1_767_225_600) -> Counter:
    return Counter("dom", (("k", value),), start, window, hits)


def test_descriptor_key_is_escaped_and_unambiguous() -> None:
    assert descriptor_key([("a", "b"), ("c", "d")]) == "a=b&c=d"
    assert descriptor_key([("a", "b&c=d")]) == "a=b%26c%3Dd"
    assert descriptor_key([("a", "b&c=d")]) != descriptor_key([("a", "b"), ("c", "d")])
    assert "{" not in descriptor_key([("x{", "}y")])


def test_key_has_the_descriptor_as_hash_tag_and_the_window_start() -> None:
    keys = KeySpace(prefix="gk")
    assert keys.ratelimit("my dom", "k=v", 120) == "gk:rl:{my%20dom/k=v}:120"
    store = RedisCounterStore(redis=Redis(), keys=keys)
    key = store.key(Counter("d", (("path", "/{x}"),), 60, 60, 1))
    assert key == "gk:rl:{d/path=%2F%7Bx%7D}:60"
    assert key_slot(key.encode()) == key_slot(b"{d/path=%2F%7Bx%7D}")


async def test_ttl_is_set_on_the_first_increment_only(
    store: RedisCounterStore, redis: Redis
) -> None:
    assert await store.hit([counter("a", hits=3)]) == [3]
    key = store.key(counter("a"))
    assert 0 < await redis.ttl(key) <= 60
    await redis.expire(key, 1000)
    assert await store.hit([counter("a", hits=2)]) == [5]
    assert 60 < await redis.ttl(key) <= 1000  # not refreshed by later hits
    assert await redis.get(key) == b"5"


async def test_zero_hits_reads_without_creating_a_key(
    store: RedisCounterStore, redis: Redis
) -> None:
    assert await store.hit([counter("fresh", hits=0)]) == [0]
    assert await redis.exists(store.key(counter("fresh"))) == 0
    await store.hit([counter("fresh", hits=2)])
    assert await store.hit([counter("fresh", hits=0)]) == [2]


async def test_windows_are_separate_keys(store: RedisCounterStore) -> None:
    assert await store.hit([counter("w", start=0), counter("w", start=60)]) == [1, 1]
    assert await store.hit([counter("w", start=0)]) == [2]


async def test_cluster_mode_groups_by_slot_and_keeps_the_order(
    redis: Redis, key_prefix: str, redis_target: RedisTarget
) -> None:
    keys = KeySpace(prefix=key_prefix)
    clustered = RedisCounterStore(redis=redis, keys=keys, cluster=True)
    single = RedisCounterStore(redis=redis, keys=keys)
    counters = [counter(str(i), hits=i + 1) for i in range(8)] + [counter("0", hits=5)]
    slots = {key_slot(clustered.key(c).encode()) for c in counters}
    assert len(slots) > 1  # spread over slots: one Lua call per slot
    assert await clustered.hit(counters) == [1, 2, 3, 4, 5, 6, 7, 8, 6]
    if redis_target.cluster:  # a real Cluster refuses one call over several slots
        with pytest.raises(RedisClusterException, match="same key slot"):
            await single.hit(counters)
        return
    assert await single.hit(counters) == [7, 4, 6, 8, 10, 12, 14, 16, 12]


async def test_concurrent_hits_are_exact(store: RedisCounterStore) -> None:
    results = await asyncio.gather(*(store.hit([counter("c")]) for _ in range(100)))
    assert sorted(r[0] for r in results) == list(range(1, 101))


async def test_concurrent_multi_descriptor_hits_are_exact_on_every_primary(
    request: pytest.FixtureRequest, store: RedisCounterStore, redis_target: RedisTarget
) -> None:
    """50 concurrent requests, each hitting 12 descriptors at once: every count ends at 50.
    On the cluster the descriptors' counters sit on all three primaries."""
    counters = [counter(f"d{i}") for i in range(12)]
    if redis_target.cluster:
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        owners = cluster.slot_owners()
        used = {owners[key_slot(store.key(c).encode())] for c in counters}
        assert used == set(cluster.primary_ports)
    results = await asyncio.gather(*(store.hit(counters) for _ in range(50)))
    for column in zip(*results, strict=True):
        assert sorted(column) == list(range(1, 51))
