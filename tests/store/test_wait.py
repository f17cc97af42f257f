"""settings.redis.wait_replicas: each decision's call is followed by WAIT on its connection, so
it is answered once its replica holds the write; one the replicas do not acknowledge in time
is answered as decided and counted. On the local Cluster (every primary has one replica)."""

from __future__ import annotations

import time

import pytest
from redis.crc import key_slot

from gatekeeper.config import parse_config
from gatekeeper.config.errors import ConfigError
from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.settings import RedisSettings
from gatekeeper.store.connection import connect_redis
from gatekeeper.store.localcluster import LocalCluster
from tests.engine.harness import make_harness
from tests.engine.workers import scenario

pytestmark = pytest.mark.cluster


def _primary_of(cluster: LocalCluster, key: str) -> int:
    return cluster.slot_owners()[key_slot(key.encode())]


@pytest.mark.parametrize("replicas", [1, 2])
async def test_each_decision_waits_for_its_replica(
    redis_cluster: LocalCluster, key_prefix: str, replicas: int
) -> None:
    settings = RedisSettings(cluster=True, wait_replicas=replicas, wait_timeout_ms=100)
    client = connect_redis(redis_cluster.seeds, settings)
    try:
        h = make_harness(
            client, scenario("hard100"), key_prefix, wait_replicas=replicas, wait_timeout_ms=100
        )
        request = DecisionRequest("cust", meters=(MeterRequest("requests", 1),))
        started = time.monotonic()
        for _ in range(5):
            assert (await h.engine.decide(request)).allowed
        took = time.monotonic() - started
        stream = h.usage_stream()
        replica = redis_cluster.replica_of(_primary_of(redis_cluster, stream))
        with redis_cluster.client(replica) as node:
            node.execute_command("READONLY")
            held = node.xlen(stream)
        if replicas == 1:  # one replica per primary: acknowledged, and it holds all 5 at once
            assert h.store.unreplicated == 0 and held == 5
        else:  # asked for 2: each decision waited its 100 ms, was answered, and counted
            assert h.store.unreplicated == 5 and took >= 0.5
    finally:
        await client.aclose()


def test_wait_without_the_autopipeline_is_refused_naming_the_setting() -> None:
    text = """
version: 1
currency: USD
features: {api: {type: boolean}}
plans: {free: {entitlements: {api: true}}}
settings: {redis: {autopipeline: false, wait_replicas: 1}}
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, env={})
    assert "settings.redis.wait_replicas" in str(err.value)
    assert "autopipeline" in str(err.value)
