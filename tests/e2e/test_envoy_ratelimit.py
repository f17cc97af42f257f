"""Envoy's rate limit filter against gatekeeper's envoyproxy/ratelimit-compatible service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.config import load_config
from tests.conftest import RedisTarget, also_on_cluster
from tests.e2e.harness import ENVOY_DIR, Upstream, client, running_envoy

POLICY = Path(__file__).with_name("policy.yaml")
pytestmark = pytest.mark.e2e


@pytest.fixture
async def envoy_url(
    redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> AsyncIterator[tuple[str, Upstream]]:
    env = {
        **redis_target.env(key_prefix),
        "GATEKEEPER_RATELIMIT_CONFIG": str(ENVOY_DIR / "ratelimit"),
    }
    app = await App(load_config(POLICY, env=env)).start(
        host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
    )
    upstream = await Upstream().start()
    try:
        with running_envoy(
            "envoy/rate-limit.yaml", grpc_port=app.grpc_port, upstream_port=upstream.port
        ) as envoy:
            yield envoy.url, upstream
    finally:
        await upstream.stop()
        await app.stop(0.5)


async def _get(url: str, client_id: str) -> tuple[int, dict[str, str]]:
    async with client() as s, s.get(url + "/anything", headers={"x-client-id": client_id}) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}


@also_on_cluster()
async def test_limits_unlimited_and_shadow_mode_through_envoy(
    envoy_url: tuple[str, Upstream],
) -> None:
    url, upstream = envoy_url
    statuses = [(await _get(url, "alice"))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, headers = await _get(url, "alice")
    assert status == 429 and headers.get("x-envoy-ratelimited") == "true"
    assert [(await _get(url, "bob"))[0] for _ in range(3)] == [200, 200, 200]  # own counter
    assert [(await _get(url, "internal"))[0] for _ in range(6)] == [200] * 6  # unlimited
    assert [(await _get(url, "canary"))[0] for _ in range(3)] == [200] * 3  # shadow mode
    assert upstream.hits == 3 + 3 + 6 + 3
