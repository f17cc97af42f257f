"""Consumer-group reads over streams of several slots on a real Cluster: one XREADGROUP per
slot, never one across slots (store/groups.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, ResponseError

from gatekeeper.settings import RedisSettings
from gatekeeper.store.connection import connect_redis
from gatekeeper.store.groups import ensure_group, xreadgroup
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.localcluster import LocalCluster


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[Redis]:
    client = connect_redis(redis_cluster.seeds, RedisSettings(cluster=True, autopipeline=False))
    try:
        yield client
    finally:
        await client.aclose()


async def test_reads_every_partition_stream_on_every_primary(
    cluster_client: Redis, redis_cluster: LocalCluster
) -> None:
    ks = KeySpace(prefix=f"gkt-{uuid.uuid4().hex[:8]}", partitions=8)
    streams = ks.all_usage_streams()
    owners = redis_cluster.slot_owners()
    assert {owners[key_slot(s.encode())] for s in streams} == set(redis_cluster.primary_ports)
    try:
        for s in streams:
            await ensure_group(cluster_client, s, "g")
            await cluster_client.xadd(s, {"s": s})
        with pytest.raises((RedisClusterException, ResponseError)):  # one command: CROSSSLOT
            await cluster_client.xreadgroup("g", "c", dict.fromkeys(streams, ">"), count=10)
        pairs = await xreadgroup(cluster_client, "g", "c", dict.fromkeys(streams, ">"), count=10)
        got = {stream.decode(): len(entries) for stream, entries in pairs}
        assert got == dict.fromkeys(streams, 1)
        # nothing new: the blocking read waits about block_ms once, on every slot together
        started = time.monotonic()
        assert (
            await xreadgroup(
                cluster_client, "g", "c", dict.fromkeys(streams, ">"), count=10, block_ms=200
            )
            == []
        )
        assert 0.15 < time.monotonic() - started < 2.0
        pending = await xreadgroup(cluster_client, "g", "c", dict.fromkeys(streams, "0"), count=10)
        assert sum(len(entries) for _, entries in pending) == len(streams)
    finally:
        await cluster_client.delete(*streams)
