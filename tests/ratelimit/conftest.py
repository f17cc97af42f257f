"""Fixtures: the messaging config, a manual clock on a window boundary, a service on real Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gatekeeper.clock import ManualClock
from gatekeeper.ratelimit import (
    RateLimitConfig,
    RateLimitService,
    RedisCounterStore,
    load_ratelimit_config,
)
from gatekeeper.store.keys import KeySpace
from tests.conftest import RedisTarget, redis_target_of, redis_targets

HERE = Path(__file__).parent
CONFIGS = HERE / "configs"
BAD = HERE / "bad"
# 2026-01-01T00:00:00Z: a multiple of every unit's length but the week's.
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def messaging() -> RateLimitConfig:
    return load_ratelimit_config(CONFIGS / "messaging.yaml")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=redis_targets(cluster=True))
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """The rate limit service's suites also run on the local Redis Cluster."""
    return redis_target_of(request, request.param)


@pytest.fixture
def store(redis: Redis, key_prefix: str, redis_target: RedisTarget) -> RedisCounterStore:
    keys = KeySpace(prefix=key_prefix)
    return RedisCounterStore(redis=redis, keys=keys, cluster=redis_target.cluster)


@pytest.fixture
def service(
    messaging: RateLimitConfig, store: RedisCounterStore, clock: ManualClock
) -> RateLimitService:
    return RateLimitService(messaging, store, clock)
