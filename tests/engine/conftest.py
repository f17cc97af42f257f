"""Every engine test runs on both Redis paths: the auto-pipeline (default) and plain redis-py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gatekeeper.settings import RedisSettings
from gatekeeper.store.connection import connect_redis
from tests.conftest import RedisTarget


@pytest.fixture(params=["autopipeline", "redis-py"])
async def redis(
    request: pytest.FixtureRequest, redis: Redis, redis_target: RedisTarget
) -> AsyncIterator[Redis]:
    """The shared fixture's client (it cleans the test's keys), or one with an auto-pipeline."""
    if request.param == "redis-py":
        yield redis
        return
    client = connect_redis(redis_target.url, RedisSettings())
    assert client.autopipeline is not None
    try:
        yield client
    finally:
        await client.aclose()
