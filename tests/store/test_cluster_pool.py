"""The Cluster client's connection bound (store/clusterclient.py): a burst past
`max_connections` waits for a connection (as the single-node BlockingConnectionPool does)
instead of failing with redis-py's MaxConnectionsError; past `pool_timeout_s` it fails."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gatekeeper.settings import RedisSettings
from gatekeeper.store.clusterclient import SUBSCRIPTION_RESERVE, GatekeeperRedisCluster
from gatekeeper.store.connection import connect_redis
from gatekeeper.store.localcluster import LocalCluster

BLOCK_S = 0.05  # each burst call holds its connection this long (BLPOP on an empty list)


@pytest.fixture
def prefix() -> str:
    return f"gkt-{uuid.uuid4().hex[:12]}"


async def _client(
    cluster: LocalCluster, max_connections: int, timeout_s: int
) -> GatekeeperRedisCluster:
    settings = RedisSettings(
        cluster=True, autopipeline=False, max_connections=max_connections,
        pool_timeout_s=timeout_s,
    )  # fmt: skip
    client = connect_redis(cluster.seeds, settings)
    assert isinstance(client, GatekeeperRedisCluster)
    await client.initialize()
    return client


@pytest.fixture
async def small(redis_cluster: LocalCluster) -> AsyncIterator[GatekeeperRedisCluster]:
    client = await _client(redis_cluster, max_connections=2, timeout_s=5)
    try:
        yield client
    finally:
        await client.aclose()


def _in_use_max(client: GatekeeperRedisCluster) -> int:
    return max(len(node._connections) for node in client.get_nodes())


async def test_a_burst_past_max_connections_waits_and_every_call_succeeds(
    small: GatekeeperRedisCluster, prefix: str
) -> None:
    key = f"{prefix}:{{burst}}:empty"  # one slot, hence one node: the worst case
    started = time.monotonic()
    replies = await asyncio.wait_for(
        asyncio.gather(*(small.blpop([key], timeout=BLOCK_S) for _ in range(20))), 30
    )
    elapsed = time.monotonic() - started
    assert replies == [None] * 20  # all answered, none raised MaxConnectionsError
    assert small.permits.waited >= 18  # 2 ran at once, the others waited their turn
    assert elapsed >= 20 / 2 * BLOCK_S * 0.8  # ~10 rounds of BLOCK_S: they took turns
    assert _in_use_max(small) <= 2  # never a third connection to the node


async def test_pipelines_and_transactions_wait_too(
    small: GatekeeperRedisCluster, prefix: str
) -> None:
    keys = [f"{prefix}:{{{i}}}:n" for i in range(6)]  # spread over the primaries

    async def pipeline(i: int) -> list[object]:
        async with small.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.incr(key)
            return await pipe.execute()

    async def transaction(i: int) -> list[object]:
        watched = f"{prefix}:{{0}}:w{i}"  # its own: the pipelines' INCRs would abort it
        async with small.pipeline(transaction=True) as pipe:
            await pipe.watch(watched)
            before = await pipe.get(watched)
            await asyncio.sleep(0.01)  # hold the WATCHed connection a while
            pipe.multi()
            pipe.set(f"{prefix}:{{0}}:t{i}", before or b"0")
            return await pipe.execute()

    results = await asyncio.wait_for(
        asyncio.gather(*(pipeline(i) for i in range(10)), *(transaction(i) for i in range(10))),
        30,
    )
    assert len(results) == 20
    assert [int(v) for v in await asyncio.gather(*(small.get(k) for k in keys))] == [10] * 6
    assert _in_use_max(small) <= 2


async def test_past_pool_timeout_the_caller_gets_a_connection_error(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    client = await _client(redis_cluster, max_connections=1, timeout_s=1)
    try:
        holder = asyncio.ensure_future(client.blpop([f"{prefix}:{{x}}:empty"], timeout=3))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.get(f"{prefix}:{{x}}:other")
        assert 0.8 <= time.monotonic() - started < 2.5
        assert await asyncio.wait_for(holder, 10) is None
        assert await client.get(f"{prefix}:{{x}}:other") is None  # the permit came back
    finally:
        await client.aclose()


async def test_each_node_keeps_room_for_subscriptions(small: GatekeeperRedisCluster) -> None:
    assert all(n.max_connections == 2 + SUBSCRIPTION_RESERVE for n in small.get_nodes())
