"""The auto-pipeline over a real Redis Cluster: routing by slot, MOVED, ASK, NOSCRIPT per
primary, and no resend once a call may have run (tests/conftest.py: redis_cluster)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.crc import key_slot

from gatekeeper.errors import StoreUnavailable
from gatekeeper.store.cluster import ClusterAutoPipeline, parse_seeds
from gatekeeper.store.endpoint import Endpoint
from gatekeeper.store.localcluster import LocalCluster
from gatekeeper.store.scripts import LuaScript


def _script(source: str) -> LuaScript:
    return LuaScript(name="t", source=source, sha=hashlib.sha1(source.encode()).hexdigest())


@pytest.fixture
async def pipe(redis_cluster: LocalCluster) -> AsyncIterator[ClusterAutoPipeline]:
    p = ClusterAutoPipeline(parse_seeds(redis_cluster.seeds))
    try:
        yield p
    finally:
        await p.aclose()


def _keys_per_primary(cluster: LocalCluster, prefix: str) -> dict[int, str]:
    """One key (own hash tag) on each primary."""
    owners = cluster.slot_owners()
    found: dict[int, str] = {}
    for i in range(1_000):
        key = f"{prefix}:{{{i}}}:k"
        found.setdefault(owners[key_slot(key.encode())], key)
        if len(found) == len(cluster.primary_ports):
            return found
    raise AssertionError("no key on some primary")


def test_seeds_from_urls_and_bare_host_ports() -> None:
    seeds = parse_seeds(
        "redis://u:pw@10.0.0.1:7000?socket_timeout=0.5, redis://10.0.0.2:7001,h3:7002"
    )
    assert [(s.host, s.port) for s in seeds] == [
        ("10.0.0.1", 7000),
        ("10.0.0.2", 7001),
        ("h3", 7002),
    ]
    assert seeds[2].password == "pw" and seeds[2].timeout_s == 0.5  # inherited from the first
    for bad in ("unix:///tmp/s", "redis://a:1,rediss://b:2", "redis://a:1,b"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


async def test_calls_go_to_the_primary_of_their_slot(
    pipe: ClusterAutoPipeline, redis_cluster: LocalCluster
) -> None:
    prefix = f"gkt-{uuid.uuid4().hex[:8]}"
    keys = _keys_per_primary(redis_cluster, prefix)
    replies = await asyncio.gather(
        *(pipe.command("SET", k, str(p), key=k) for p, k in keys.items())
    )
    assert replies == [b"OK"] * 3
    assert pipe.refreshes == 1 and pipe.redirects == 0
    assert sorted(pipe.primaries) == sorted(f"127.0.0.1:{p}" for p in redis_cluster.primary_ports)
    for port, key in keys.items():
        with redis_cluster.client(port) as node:  # a plain client: no redirection followed
            assert node.execute_command("GET", key) == str(port).encode()
            node.execute_command("DEL", key)


async def test_moved_updates_the_map_and_resends(
    pipe: ClusterAutoPipeline, redis_cluster: LocalCluster
) -> None:
    prefix = f"gkt-{uuid.uuid4().hex[:8]}"
    keys = _keys_per_primary(redis_cluster, prefix)
    (port_a, key_a), (port_b, _) = list(keys.items())[:2]
    await pipe.refresh()
    slot = key_slot(key_a.encode())
    # a stale map: the slot points at another primary, which answers MOVED (nothing ran there)
    pipe._slots[slot] = pipe._node("127.0.0.1", port_b)
    assert await pipe.command("INCR", key_a, key=key_a) == 1
    assert pipe.redirects == 1
    assert pipe._slots[slot] is pipe._node("127.0.0.1", port_a)
    with redis_cluster.client(port_a) as node:
        assert node.execute_command("GET", key_a) == b"1"  # ran once, on the owner
        node.execute_command("DEL", key_a)


async def test_ask_during_a_migration_sends_asking_and_the_call_once(
    pipe: ClusterAutoPipeline, redis_cluster: LocalCluster
) -> None:
    prefix = f"gkt-{uuid.uuid4().hex[:8]}"
    keys = _keys_per_primary(redis_cluster, prefix)
    (port_a, key), (port_b, _) = list(keys.items())[:2]
    slot = key_slot(key.encode())
    with redis_cluster.client(port_a) as a, redis_cluster.client(port_b) as b:
        id_a = a.execute_command("CLUSTER", "MYID").decode()
        id_b = b.execute_command("CLUSTER", "MYID").decode()
        b.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", id_a)
        a.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", id_b)
        try:
            # the key is not on A: A answers ASK, B runs it after ASKING
            assert await pipe.command("INCR", key, key=key) == 1
            assert pipe.redirects == 1
            with b.pipeline(transaction=False) as p:  # read and clean up on B, as ASKING allows
                p.execute_command("ASKING").execute_command("GET", key)
                p.execute_command("ASKING").execute_command("DEL", key)
                assert p.execute()[1] == b"1"
        finally:
            a.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
            b.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")


async def test_noscript_loads_the_script_on_each_primary_it_runs_on(
    pipe: ClusterAutoPipeline, redis_cluster: LocalCluster
) -> None:
    prefix = f"gkt-{uuid.uuid4().hex[:8]}"
    keys = _keys_per_primary(redis_cluster, prefix)
    script = _script(f"-- {prefix}\nreturn redis.call('INCR', KEYS[1])")
    for key in keys.values():
        assert await script.run_pipelined(pipe, [key], []) == 1
    for port, key in keys.items():
        with redis_cluster.client(port) as node:
            assert node.execute_command("SCRIPT", "EXISTS", script.sha) == [1]
            node.execute_command("DEL", key)


async def test_a_call_that_may_have_run_is_never_resent(redis_cluster: LocalCluster) -> None:
    """The reply is lost (timeout): StoreUnavailable, the script ran exactly once."""
    seeds = parse_seeds(redis_cluster.seeds.replace(",", "?socket_timeout=0.1,", 1))
    assert seeds[0].timeout_s == 0.1 and seeds[1].timeout_s == 0.1
    pipe = ClusterAutoPipeline(seeds)
    key = f"gkt-{uuid.uuid4().hex[:8]}:{{slow}}:n"
    slow = _script(
        "redis.call('INCR', KEYS[1]) local t0 = redis.call('TIME') "
        "repeat local t = redis.call('TIME') "
        "until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 300000 return 1"
    )
    try:
        with pytest.raises(StoreUnavailable, match="timed out"):
            await slow.run_pipelined(pipe, [key], [])
        await asyncio.sleep(0.4)  # the script finishes; nothing sends it again
        assert await pipe.command("GET", key, key=key) == b"1"
        await pipe.command("DEL", key, key=key)
    finally:
        await pipe.aclose()


async def test_no_node_answers(redis_cluster: LocalCluster) -> None:
    pipe = ClusterAutoPipeline([Endpoint(host="127.0.0.1", port=1, connect_timeout_s=0.5)])
    try:
        with pytest.raises(StoreUnavailable, match="no cluster node answered"):
            await pipe.command("PING", key="x")
    finally:
        await pipe.aclose()


async def _until(cond: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await cond():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_failovers_are_followed_and_ambiguous_calls_not_resent() -> None:
    """A private cluster: a manual failover (the old primary answers MOVED: resent), then a
    primary killed (its calls fail, the map is re-read, the promoted replica serves)."""
    with LocalCluster(node_timeout_ms=1_000) as cluster:
        pipe = ClusterAutoPipeline(parse_seeds(cluster.seeds))
        try:
            keys = _keys_per_primary(cluster, "gkt-failover")
            (first, key_a), (second, key_b) = list(keys.items())[:2]
            assert await pipe.command("INCR", key_a, key=key_a) == 1
            assert await pipe.command("INCR", key_b, key=key_b) == 1
            # graceful: the replica takes over; the old primary redirects with MOVED
            promoted = cluster.replica_of(first)
            with cluster.client(promoted) as node:
                node.execute_command("CLUSTER", "FAILOVER")

            async def moved() -> bool:
                return cluster.slot_owners()[key_slot(key_a.encode())] == promoted

            await _until(moved, 10)
            assert await pipe.command("INCR", key_a, key=key_a) == 2
            assert pipe.redirects >= 1
            # hard: the primary of key_b dies; calls fail until its replica is promoted
            cluster.kill(second)
            with pytest.raises(StoreUnavailable):
                await pipe.command("INCR", key_b, key=key_b)

            async def served() -> bool:
                try:
                    return await pipe.command("GET", key_b, key=key_b) == b"1"
                except StoreUnavailable:
                    return False

            await _until(served, 20)
            assert await pipe.command("INCR", key_b, key=key_b) == 2  # nothing ran twice
            assert pipe.refreshes >= 2
        finally:
            await pipe.aclose()
