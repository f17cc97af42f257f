"""Key changes made through one gatekeeper process take effect on another within a second:
a created key admits, a revoked key is refused, an expired key is refused like a revoked one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.clock import ManualClock
from gatekeeper.config import load_config
from gatekeeper.edge.request import EdgeRequest
from tests.api.conftest import ADMIN, POLICY
from tests.conftest import RedisTarget, also_on_cluster

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)


@pytest.fixture
async def pair(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[App, App, ManualClock]]:
    clock = ManualClock(T0)
    env = {**redis_target.env(key_prefix), "GATEKEEPER_ADMIN_TOKEN": ADMIN}
    apps = []
    try:
        for _ in range(2):
            app = App(load_config(POLICY, env=env), clock=clock)
            await app.start(host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0)
            apps.append(app)
        yield apps[0], apps[1], clock
    finally:
        for app in apps:
            await app.stop(0)


async def _status(app: App, key: str) -> int:
    assert app.authorizer is not None
    answer = await app.authorizer.check(EdgeRequest("GET", "/v1/models", {"x-api-key": key}))
    return answer.status


async def _within(seconds: float, app: App, key: str, status: int) -> float:
    """How long until `key` gets `status` on `app` (fails past `seconds`)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if await _status(app, key) == status:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"{key} did not get {status} within {seconds}s")


async def _api(app: App, method: str, path: str, body: object | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"http://127.0.0.1:{app.http_port}{path}",
            json=body,
            headers={"authorization": f"Bearer {ADMIN}"},
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


@also_on_cluster()
async def test_created_revoked_and_expired_keys_apply_on_the_other_process(
    pair: tuple[App, App, ManualClock],
) -> None:
    a, b, clock = pair
    assert await _status(a, "gk-test-hobbyist") == 200  # warm: a holds hobbyist now
    status, issued = await _api(b, "POST", "/v1/customers/hobbyist/api-keys", {"id": "new"})
    assert status == 201, issued
    assert await _within(1.0, a, issued["key"], 200) < 1.0
    status, _ = await _api(b, "DELETE", "/v1/customers/hobbyist/api-keys/new")
    assert status == 200
    assert await _within(1.0, a, issued["key"], 401) < 1.0

    expires = (T0 + timedelta(hours=1)).isoformat()
    status, temp = await _api(
        b, "POST", "/v1/customers/hobbyist/api-keys", {"id": "temp", "expires_at": expires}
    )
    assert status == 201 and temp["expires_at"] == expires, temp
    assert await _within(1.0, a, temp["key"], 200) < 1.0
    clock.advance(timedelta(hours=1))
    assert await _status(a, temp["key"]) == 401 and await _status(b, temp["key"]) == 401
    status, keys = await _api(a, "GET", "/v1/customers/hobbyist/api-keys")
    assert {k["id"]: k["revoked"] for k in keys["api_keys"]} == {
        "hobby": False,
        "new": True,
        "temp": False,
    }
