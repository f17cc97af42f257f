"""Every engine test runs on both Redis paths (the auto-pipeline, default, and plain redis-py),
on one server and on the local Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gatekeeper.store.connection import connect_redis
from tests.conftest import RedisTarget, redis_target_of, redis_targets


@pytest.fixture(params=redis_targets(cluster=True))
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """The engine's suites also run on the local Redis Cluster."""
    return redis_target_of(request, request.param)


@pytest.fixture(params=["autopipeline", "redis-py"])
async def redis(
    request: pytest.FixtureRequest, redis: Redis, redis_target: RedisTarget
) -> AsyncIterator[Redis]:
    """The shared fixture's client (it cleans the test's keys), or one with an auto-pipeline."""
    if request.param == "redis-py":
        yield redis
        return
    client = connect_redis(redis_target.url, redis_target.settings)
    assert client.autopipeline is not None
    try:
        yield client
    finally:
        await client.aclose()
