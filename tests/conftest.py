"""Shared fixtures: real Redis servers (embedded always; GATEKEEPER_REDIS_URL when set).

Every test gets its own key prefix, and only keys under that prefix are deleted afterwards:
we never flush a server we did not start.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest
from redis.asyncio import Redis

from gatekeeper.settings import RedisSettings
from gatekeeper.store.connection import connect_redis
from gatekeeper.store.embedded import EmbeddedRedis
from gatekeeper.store.localcluster import LocalCluster

T = TypeVar("T")


@dataclass(frozen=True)
class RedisTarget:
    name: str  # embedded | external | cluster
    url: str  # the cluster's: comma-separated seeds
    cluster: bool = False

    @property
    def settings(self) -> RedisSettings:
        """RedisSettings for this target (cluster on for the cluster)."""
        return RedisSettings(cluster=self.cluster)

    def env(self, prefix: str) -> dict[str, str]:
        """GATEKEEPER_REDIS_* of a gatekeeper (App or command) using this target under `prefix`."""
        env = {"GATEKEEPER_REDIS_URL": self.url, "GATEKEEPER_REDIS_KEY_PREFIX": prefix}
        if self.cluster:
            env["GATEKEEPER_REDIS_CLUSTER"] = "true"
        return env


def redis_targets(*, cluster: bool = False) -> list[str]:
    """Target names: embedded, external when GATEKEEPER_REDIS_URL is set, and the local Redis
    Cluster for suites whose code under test takes one (they override `redis_target`)."""
    names = ["embedded", "external"] if os.environ.get("GATEKEEPER_REDIS_URL") else ["embedded"]
    return [*names, "cluster"] if cluster else names


def redis_target_of(request: pytest.FixtureRequest, name: str) -> RedisTarget:
    if name == "external":
        return RedisTarget("external", os.environ["GATEKEEPER_REDIS_URL"])
    if name == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return RedisTarget("cluster", cluster.seeds, cluster=True)
    server: EmbeddedRedis = request.getfixturevalue("embedded_redis")
    return RedisTarget("embedded", server.url)


def also_on_cluster(fixture: str = "redis_target") -> Callable[[T], T]:
    """Run the test on the local Redis Cluster too: `fixture` (`redis_target`, or `app_target`
    for suites on the embedded server only) parametrized over its targets plus the cluster,
    and the `cluster` mark. For suites that run representative tests there, not all of them
    (tests/engine runs all: its conftest overrides redis_target)."""
    targets = redis_targets(cluster=True) if fixture == "redis_target" else ["embedded", "cluster"]

    def mark(test: T) -> T:
        return pytest.mark.cluster(pytest.mark.parametrize(fixture, targets, indirect=True)(test))

    return mark


@pytest.fixture(params=["embedded"])
def app_target(request: pytest.FixtureRequest) -> RedisTarget:
    """The Redis of suites that start whole Apps on the embedded server only (tests/api):
    the embedded server; the cluster too with @also_on_cluster("app_target")."""
    return redis_target_of(request, request.param)


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


@pytest.fixture(params=redis_targets())
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    return redis_target_of(request, request.param)


@pytest.fixture
def key_prefix() -> str:
    return f"gkt-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_target: RedisTarget, key_prefix: str) -> AsyncIterator[Redis]:
    """A redis-py client of the target (RedisCluster on the cluster, without auto-pipeline);
    the test's keys are deleted afterwards (SCAN over every primary on the cluster)."""
    if redis_target.cluster:
        settings = RedisSettings(cluster=True, autopipeline=False)
        client: Redis = connect_redis(redis_target.url, settings)
    else:
        client = Redis.from_url(redis_target.url, socket_timeout=10)  # a silent server fails
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
        await client.aclose()
