"""`GET /metrics` on the API port of a real App (real Redis): unauthenticated, Prometheus text
0.0.4, and its counters move by exactly the decisions made through the HTTP ext_authz port."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.app_metrics import OUTCOMES
from gatekeeper.config import load_config
from gatekeeper.metrics import CONTENT_TYPE
from tests.api.conftest import ADMIN, POLICY, key_of
from tests.conftest import RedisTarget
from tests.prometheus_text import Family, parse, value

RATELIMIT_CONFIG = Path(__file__).parents[2] / "envoy" / "ratelimit"
DECISIONS = "gatekeeper_decisions_total"
LATENCY = "gatekeeper_decision_duration_seconds"


async def _start(target: RedisTarget, prefix: str, **extra_env: str) -> App:
    env = {
        "GATEKEEPER_REDIS_URL": target.url,
        "GATEKEEPER_REDIS_KEY_PREFIX": prefix,
        "GATEKEEPER_ADMIN_TOKEN": ADMIN,
        **extra_env,
    }
    app = App(load_config(POLICY, env=env))
    return await app.start(host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0)


@pytest.fixture
async def app(
    redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> AsyncIterator[App]:  # `redis` deletes the prefix's keys afterwards
    started = await _start(redis_target, key_prefix)
    try:
        yield started
    finally:
        await started.stop(0)


async def _scrape(session: aiohttp.ClientSession, app: App) -> dict[str, Family]:
    async with session.get(f"http://127.0.0.1:{app.http_port}/metrics") as response:
        assert response.status == 200  # no token: like /healthz
        assert response.headers["Content-Type"] == CONTENT_TYPE
        text = await response.text()
    # Prometheus' own client library reads the whole scrape, every family, as well
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "gatekeeper_decisions" in names and "gatekeeper_gc_pause_seconds" in names
    return parse(text)


async def _authz(session: aiohttp.ClientSession, app: App, key: str | None) -> int:
    """One decision through the ext_authz HTTP port, as Envoy's http_service would ask it."""
    headers = {} if key is None else {"x-api-key": key}
    url = f"http://127.0.0.1:{app.authz_http_port}/v1/chat/completions"
    async with session.post(url, headers=headers) as response:
        await response.read()
        return response.status


def _decisions(families: dict[str, Family]) -> dict[str, float]:
    return {dict(labels)["outcome"]: v for (_, labels), v in families[DECISIONS].samples.items()}


async def test_decisions_move_the_counters_by_exactly_what_was_decided(app: App) -> None:
    async with aiohttp.ClientSession() as session:
        before = await _scrape(session, app)
        statuses = [await _authz(session, app, key_of("hobbyist")) for _ in range(8)]
        statuses.append(await _authz(session, app, None))
        statuses.append(await _authz(session, app, "gk-test-nobody"))
        after = await _scrape(session, app)

    assert statuses == [200] * 5 + [429] * 3 + [401, 401]  # free plan: 5 chat requests a day
    assert set(_decisions(before)) == set(OUTCOMES)  # every outcome has a series from the start
    moved = {o: _decisions(after)[o] - _decisions(before)[o] for o in OUTCOMES}
    assert {o: n for o, n in moved.items() if n} == {
        "allowed": 5,
        "quota_exhausted": 3,
        "missing_credentials": 1,
        "invalid_credentials": 1,
    }
    assert value(after, LATENCY + "_count") - value(before, LATENCY + "_count") == 10
    assert value(after, LATENCY + "_sum") > value(before, LATENCY + "_sum")
    assert value(after, LATENCY + "_bucket", le="0.1") <= 10  # cumulative, checked by parse()
    # the first denial asks Redis; the two after it are answered from the remembered one
    denied_locally = "gatekeeper_decisions_denied_locally_total"
    assert value(after, denied_locally) - value(before, denied_locally) == 2

    # the customer is read from Redis once (the first decision's identity step); after that,
    # each decision finds it in the cache twice (identity, then the decision itself)
    hits, misses = (
        "gatekeeper_directory_cache_hits_total",
        "gatekeeper_directory_cache_misses_total",
    )
    assert value(after, misses) - value(before, misses) == 1
    assert value(after, hits) - value(before, hits) == 2 * 8 - 1
    assert value(after, "gatekeeper_directory_cache_entries") >= 1
    assert value(after, "gatekeeper_directory_cache_evictions_total") == 0
    assert value(after, "gatekeeper_directory_compile_failures_total") == 0

    assert value(after, "gatekeeper_ready") == 1
    for operation in ("decide", "settle", "offline_backlog"):
        assert value(after, "gatekeeper_store_unavailable_total", operation=operation) == 0
    assert value(after, "gatekeeper_redis_autopipeline_in_flight") == 0  # nothing in flight
    for task in app.supervisor.tasks:
        assert value(after, "gatekeeper_background_task_failures_total", task=task) == 0
    started = value(after, "process_start_time_seconds")
    assert time.time() - 86400 < started <= time.time()
    assert "gatekeeper_offline_backlog" not in after  # fail-closed: no backlog
    assert "gatekeeper_ratelimit_requests_total" not in after  # no RLS config


async def test_metrics_needs_no_token_and_is_not_in_the_openapi_document(app: App) -> None:
    base = f"http://127.0.0.1:{app.http_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/metrics", headers={"authorization": "Bearer wrong"}) as r:
            assert r.status == 200
        async with session.get(f"{base}/v1/openapi.json") as r:
            document = await r.json()
    assert "/metrics" not in document["paths"] and "/healthz" not in document["paths"]


async def test_a_dead_background_task_is_counted_and_makes_the_process_not_ready(
    app: App,
) -> None:
    async def dies() -> None:
        raise RuntimeError("boom")

    app.supervisor.start("doomed", dies())
    for _ in range(100):
        if app.failures:
            break
        await asyncio.sleep(0.01)
    async with aiohttp.ClientSession() as session:
        families = await _scrape(session, app)
    assert value(families, "gatekeeper_background_task_failures_total", task="doomed") == 1
    assert value(families, "gatekeeper_ready") == 0


async def test_rate_limit_service_answers_are_counted_by_code(
    redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> None:
    app = await _start(redis_target, key_prefix, GATEKEEPER_RATELIMIT_CONFIG=str(RATELIMIT_CONFIG))
    try:
        request = rls_pb2.RateLimitRequest(
            domain="edge",
            descriptors=[
                ratelimit_pb2.RateLimitDescriptor(
                    entries=[
                        ratelimit_pb2.RateLimitDescriptor.Entry(key="client", value=key_prefix)
                    ]
                )
            ],
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            stub = rls_pb2_grpc.RateLimitServiceStub(channel)
            codes = [(await stub.ShouldRateLimit(request)).overall_code for _ in range(5)]
        async with aiohttp.ClientSession() as session:
            families = await _scrape(session, app)
    finally:
        await app.stop(0)
    over = codes.count(rls_pb2.RateLimitResponse.OVER_LIMIT)
    assert over >= 1  # 3 a minute: at least 2 of 5 are over, even across a minute boundary
    counted = "gatekeeper_ratelimit_requests_total"
    assert value(families, counted, code="OVER_LIMIT") == over
    assert value(families, counted, code="OK") == 5 - over
    assert value(families, "gatekeeper_store_unavailable_total", operation="ratelimit") == 0


async def test_every_metric_is_documented_in_the_readme(
    redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> None:
    """With every optional part on (fail-open backlog, rate limit service, WAIT after each
    decision), the metrics served are exactly those the README's Metrics table lists."""
    app = await _start(
        redis_target,
        key_prefix,
        GATEKEEPER_FAILURE_MODE="open",
        GATEKEEPER_RATELIMIT_CONFIG=str(RATELIMIT_CONFIG),
        GATEKEEPER_REDIS_WAIT_REPLICAS="1",
        GATEKEEPER_REDIS_WAIT_TIMEOUT_MS="1",
    )
    try:
        async with aiohttp.ClientSession() as session:
            served = set(await _scrape(session, app))
    finally:
        await app.stop(0)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_:]+)` \|", section, flags=re.MULTILINE))
    assert served == documented


async def test_a_handler_that_raises_is_counted(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the decision path: answered 500 (Envoy's status_on_error), logged, and counted
    where an operator's alert sees it."""
    failures = "gatekeeper_handler_failures_total"

    async def broken(request: object) -> object:
        raise RuntimeError("authorizer bug")

    async with aiohttp.ClientSession() as session:
        before = await _scrape(session, app)
        monkeypatch.setattr(app.authorizer, "_check", broken)
        status = await _authz(session, app, key_of("hobbyist"))
        after = await _scrape(session, app)

    assert status == 500
    assert value(before, failures, server="authz_http", method="check") == 0
    assert value(after, failures, server="authz_http", method="check") == 1
