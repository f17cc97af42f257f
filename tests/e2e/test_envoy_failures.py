"""Store and gatekeeper failures through a real Envoy: the configured failure mode holds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.config import load_config
from gatekeeper.events import UsageEvent
from gatekeeper.store.embedded import EmbeddedRedis
from tests.conftest import RedisTarget
from tests.e2e.harness import (
    MODES,
    Upstream,
    client,
    free_port,
    front_proxy,
    wait_for,
)

POLICY = Path(__file__).with_name("policy.yaml")
pytestmark = pytest.mark.e2e


@pytest.fixture
def own_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A Redis this test may stop and restart (AOF on, same port and directory)."""
    server = EmbeddedRedis(port=free_port(), appendonly=True, directory=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _post(url: str, customer: str = "busy") -> tuple[int, dict[str, str], bytes]:
    headers = {"x-api-key": f"gk-test-{customer}", "x-test-tokens": "10"}
    async with client() as s, s.post(url + "/v1/chat/completions", headers=headers) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


async def _start(env: dict[str, str]) -> App:
    return await App(load_config(POLICY, env=env)).start(
        host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
    )


def _proxy(mode: str, app: App, upstream: Upstream, **changes: Any):  # type: ignore[no-untyped-def]
    return front_proxy(
        mode,
        grpc_port=app.grpc_port,
        authz_http_port=app.authz_http_port,
        upstream_port=upstream.port,
        **changes,
    )


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = await Upstream().start()
    yield up
    await up.stop()


async def test_fail_closed_answers_503_while_redis_is_down(
    own_redis: EmbeddedRedis, upstream: Upstream, mode: str
) -> None:
    app = await _start({"GATEKEEPER_REDIS_URL": own_redis.url, "GATEKEEPER_FAILURE_MODE": "closed"})
    try:
        with _proxy(mode, app, upstream) as envoy:
            assert (await _post(envoy.url))[0] == 200
            own_redis.stop()
            assert (await _post(envoy.url))[0] == 503  # UNAVAILABLE → Envoy's status_on_error
            own_redis.start()
            assert await wait_for(lambda: _ok(envoy.url), timeout_s=10)
            assert await wait_for(lambda: app.healthy and not app.failures, timeout_s=10)
        assert upstream.hits >= 2
    finally:
        await app.stop(0.5)


async def _ok(url: str) -> bool:
    return (await _post(url))[0] == 200


async def test_fail_closed_as_503_problem(
    own_redis: EmbeddedRedis, upstream: Upstream, mode: str
) -> None:
    env = {"GATEKEEPER_REDIS_URL": own_redis.url, "GATEKEEPER_EDGE_FAIL_CLOSED_ANSWER": "503"}
    app = await _start(env)
    try:
        with _proxy(mode, app, upstream) as envoy:
            own_redis.stop()
            status, headers, body = await _post(envoy.url)
            assert status == 503
            if mode == "grpc":  # in HTTP mode Envoy replaces a 5xx with its status_on_error
                assert headers["content-type"] == "application/problem+json"
                assert json.loads(body)["title"] == "Service unavailable"
    finally:
        await app.stop(0.5)


async def test_fail_open_admits_and_records_everything_once_redis_is_back(
    own_redis: EmbeddedRedis, upstream: Upstream, mode: str
) -> None:
    app = await _start({"GATEKEEPER_REDIS_URL": own_redis.url, "GATEKEEPER_FAILURE_MODE": "open"})
    try:
        with _proxy(mode, app, upstream) as envoy:
            for _ in range(3):
                assert (await _post(envoy.url))[0] == 200
            own_redis.stop()
            for _ in range(4):
                assert (await _post(envoy.url))[0] == 200  # admitted offline
            assert app.backlog is not None and len(app.backlog) == 4
            own_redis.start()
            assert await wait_for(
                lambda: app.backlog is not None and len(app.backlog) == 0, timeout_s=15
            )
            # no background task died of the outage (the invalidation listener reconnects)
            assert await wait_for(lambda: app.healthy and not app.failures, timeout_s=10)
        admitted = {h["x-gatekeeper-decision-id"] for h in upstream.seen_headers}
        assert len(admitted) == 7
        redis = Redis.from_url(own_redis.url)
        keys = app.engine._store.keys  # type: ignore[union-attr,attr-defined]
        raw = await redis.xrange(keys.usage_stream(keys.partition("busy")))
        await redis.aclose()
        events = [UsageEvent.from_fields(f) for _, f in raw]
        chat = [e for e in events if e.feature == "chat_requests"]
        assert {e.decision_id for e in chat} == admitted  # no admitted request lacks its event
        assert len(chat) == 7
    finally:
        await app.stop(0.5)


@pytest.mark.parametrize("allow", [False, True])
async def test_gatekeeper_down_envoy_failure_mode_allow_decides(
    redis: Redis,
    redis_target: RedisTarget,
    key_prefix: str,
    upstream: Upstream,
    allow: bool,
    mode: str,
) -> None:
    env = {"GATEKEEPER_REDIS_URL": redis_target.url, "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix}
    app = await _start(env)

    with _proxy(mode, app, upstream, failure_mode_allow=allow) as envoy:
        assert (await _post(envoy.url))[0] == 200
        await app.stop(0.2)  # gatekeeper killed
        status, _, _ = await _post(envoy.url)
        assert status == (200 if allow else 503)
