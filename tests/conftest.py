"""Shared fixtures: real Redis servers (embedded always; GATEKEEPER_REDIS_URL when set).

Every test gets its own key prefix, and only keys under that prefix are deleted afterwards:
we never flush a server we did not start.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from gatekeeper.store.embedded import EmbeddedRedis
from gatekeeper.store.localcluster import LocalCluster


@dataclass(frozen=True)
class RedisTarget:
    name: str  # embedded | external
    url: str


def _targets() -> list[str]:
    return ["embedded", "external"] if os.environ.get("GATEKEEPER_REDIS_URL") else ["embedded"]


@pytest.fixture(scope="session")
def embedded_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A real Redis Cluster (3 primaries, 3 replicas) on 127.0.0.1, started once per session
    from the embedded Redis's binary and stopped (every process, by PID) at its end."""
    cluster = LocalCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=_targets())
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    if request.param == "external":
        return RedisTarget("external", os.environ["GATEKEEPER_REDIS_URL"])
    server: EmbeddedRedis = request.getfixturevalue("embedded_redis")
    return RedisTarget("embedded", server.url)


@pytest.fixture
def key_prefix() -> str:
    return f"gkt-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_target: RedisTarget, key_prefix: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_target.url)
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
        await client.aclose()
