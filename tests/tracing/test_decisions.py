"""Decisions in-process, through gatekeeper's own servers: spans when tracing is on (parent,
children, attributes, the traceparent in the usage stream), nothing at all when it is off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as authz
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.config import load_config
from gatekeeper.events import UsageEvent
from gatekeeper.tracing import Tracing
from gatekeeper.tracing.w3c import parse
from gatekeeper.v1 import gatekeeper_pb2 as pb
from gatekeeper.v1 import gatekeeper_pb2_grpc as pb_grpc
from tests.conftest import RedisTarget
from tests.tracing.support import memory_tracing, named

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "tests" / "e2e" / "policy.yaml"
API_KEY = "gk-test-busy"
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT = f"00-{TRACE_ID:032x}-00f067aa0ba902b7-01"


async def _app(redis_target: RedisTarget, key_prefix: str, tracing: Tracing | None) -> App:
    env = {
        "GATEKEEPER_REDIS_URL": redis_target.url,
        "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix,
        "GATEKEEPER_RATELIMIT_CONFIG": str(REPO / "envoy" / "ratelimit"),
    }
    return await App(load_config(POLICY, env=env), tracing=tracing).start(
        host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
    )


@pytest.fixture
async def traced(
    redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> AsyncIterator[tuple[App, InMemorySpanExporter]]:
    tracing, spans = memory_tracing()
    app = await _app(redis_target, key_prefix, tracing)
    try:
        yield app, spans
    finally:
        await app.stop(0.5)
        tracing.shutdown()


async def _http_check(app: App, headers: dict[str, str]) -> aiohttp.ClientResponse:
    url = f"http://127.0.0.1:{app.authz_http_port}/v1/chat/completions"
    async with aiohttp.ClientSession() as s, s.post(url, headers=headers) as r:
        await r.read()
        return r


def _check_request(headers: dict[str, str]) -> authz.CheckRequest:
    request = authz.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path = "POST", "/v1/chat/completions"
    http.headers.update(headers)
    return request


async def _events(app: App, redis: Redis) -> list[UsageEvent]:
    keys = app.engine._store.keys  # type: ignore[union-attr,attr-defined]
    raw = await redis.xrange(keys.usage_stream(keys.partition("busy")))
    return [UsageEvent.from_fields(f) for _, f in raw]


async def test_http_decision_span_is_a_child_of_envoys_context_with_redis_under_it(
    traced: tuple[App, InMemorySpanExporter], redis: Redis
) -> None:
    app, spans = traced
    response = await _http_check(app, {"x-api-key": API_KEY, "traceparent": PARENT})
    assert response.status == 200
    decision_id = response.headers["x-gatekeeper-decision-id"]
    (decision,) = named(spans, "ext_authz http")
    (evalsha,) = named(spans, "EVALSHA decide")
    assert decision.kind is SpanKind.SERVER
    assert decision.parent is not None and decision.parent.is_remote
    assert (decision.context.trace_id, decision.parent.span_id) == (TRACE_ID, 0x00F067AA0BA902B7)  # type: ignore[union-attr]
    assert evalsha.parent is not None and evalsha.parent.span_id == decision.context.span_id  # type: ignore[union-attr]
    assert evalsha.kind is SpanKind.CLIENT
    assert dict(decision.attributes or {}) == {
        "gatekeeper.outcome": "allowed",
        "gatekeeper.customer": "busy",
        "gatekeeper.features": ("api_access", "chat_requests", "llm_tokens"),
        "gatekeeper.decision_id": decision_id,
        "gatekeeper.plan": "burst",
    }
    assert API_KEY not in repr([s.to_json() for s in spans.get_finished_spans()])
    events = [e for e in await _events(app, redis) if e.decision_id == decision_id]
    assert len(events) == 2  # chat_requests and llm_tokens: both carry the context
    assert len({e.traceparent for e in events}) == 1
    carried = parse(events[0].traceparent)
    assert carried is not None
    assert (carried.trace_id, carried.span_id) == (TRACE_ID, decision.context.span_id)  # type: ignore[union-attr]


async def test_a_denial_without_redis_is_a_span_too(
    traced: tuple[App, InMemorySpanExporter],
) -> None:
    app, spans = traced
    response = await _http_check(app, {"x-api-key": "gk-test-nobody"})
    assert response.status == 401
    (decision,) = named(spans, "ext_authz http")
    assert decision.parent is None  # no context sent: a new trace
    assert (decision.attributes or {})["gatekeeper.outcome"] == "invalid_credentials"
    assert named(spans, "EVALSHA decide") == []


async def test_grpc_check_takes_its_parent_from_the_call_metadata(
    traced: tuple[App, InMemorySpanExporter],
) -> None:
    app, spans = traced
    other = f"00-{1:032x}-{2:016x}-01"  # in the HTTP headers: the metadata wins
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        stub = authz_grpc.AuthorizationStub(channel)
        response = await stub.Check(
            _check_request({"x-api-key": API_KEY, "traceparent": other}),
            metadata=(("traceparent", PARENT),),
        )
    assert response.status.code == 0
    (decision,) = named(spans, "ext_authz grpc")
    assert decision.context.trace_id == TRACE_ID  # type: ignore[union-attr]
    assert named(spans, "EVALSHA decide")[0].parent.span_id == decision.context.span_id  # type: ignore[union-attr]


async def test_own_api_check_and_ratelimit_are_spans(
    traced: tuple[App, InMemorySpanExporter],
) -> None:
    app, spans = traced
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        answer = await pb_grpc.GatekeeperStub(channel).Check(
            pb.CheckRequest(
                api_key=API_KEY, requires=["api_access"],
                meters=[pb.Meter(feature="chat_requests", quantity=1)],
            ),
            metadata=(("traceparent", PARENT),),
        )  # fmt: skip
        limited = await rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(
            rls_pb2.RateLimitRequest(
                domain="edge",
                descriptors=[{"entries": [{"key": "client", "value": "secret-client-7"}]}],
            ),
            metadata=(("traceparent", PARENT),),
        )
    assert answer.allowed and limited.overall_code == rls_pb2.RateLimitResponse.OK
    (check,) = named(spans, "gatekeeper.v1.Gatekeeper/Check")
    assert check.context.trace_id == TRACE_ID  # type: ignore[union-attr]
    assert (check.attributes or {})["gatekeeper.decision_id"] == answer.decision_id
    assert (check.attributes or {})["gatekeeper.outcome"] == "allowed"
    (rls,) = named(spans, "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit")
    assert rls.context.trace_id == TRACE_ID  # type: ignore[union-attr]
    assert dict(rls.attributes or {}) == {
        "gatekeeper.ratelimit.domain": "edge",
        "gatekeeper.ratelimit.descriptors": ("client",),  # keys only, never values
        "gatekeeper.outcome": "ok",
    }
    (script,) = named(spans, "EVALSHA ratelimit")
    assert script.parent.span_id == rls.context.span_id  # type: ignore[union-attr]


async def test_tracing_off_creates_no_span_and_attaches_no_context(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    start_span = SdkTracer.start_span
    attach = otel_context.attach

    def counted_start(*args: object, **kwargs: object) -> object:
        calls.append("start_span")
        return start_span(*args, **kwargs)  # type: ignore[arg-type]

    def counted_attach(*args: object, **kwargs: object) -> object:
        calls.append("attach")
        return attach(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SdkTracer, "start_span", counted_start)
    monkeypatch.setattr(otel_context, "attach", counted_attach)
    app = await _app(redis_target, key_prefix, None)
    try:
        assert (await _http_check(app, {"x-api-key": API_KEY, "traceparent": PARENT})).status == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            await authz_grpc.AuthorizationStub(channel).Check(
                _check_request({"x-api-key": API_KEY}), metadata=(("traceparent", PARENT),)
            )
        events = await _events(app, redis)
    finally:
        await app.stop(0.5)
    assert calls == []
    assert len(events) == 4 and all(e.traceparent == "" for e in events)  # 2 meters each
