"""Tracing through a real Envoy: Envoy's span → gatekeeper's decision span → Redis span.

Envoy (its OpenTelemetry tracer on, exporting OTLP/HTTP) and gatekeeper (its own exporter)
both send to one receiver started here; opentelemetry-proto decodes what arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.config import load_config
from gatekeeper.envoyconfig import Address
from gatekeeper.events import UsageEvent
from gatekeeper.tracing import Tracing, parse_tracing_env
from gatekeeper.tracing.w3c import parse
from tests.conftest import RedisTarget
from tests.e2e.harness import MODES, Upstream, client, front_proxy, wait_for
from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedSpan

POLICY = Path(__file__).with_name("policy.yaml")
API_KEY = "gk-test-busy"  # the customer `busy` (plan burst)
SPAN_NAMES = {"http": "ext_authz http", "grpc": "ext_authz grpc"}
pytestmark = pytest.mark.e2e


@dataclass
class TracedStack:
    app: App
    tracing: Tracing
    receiver: OtlpReceiver
    upstream: Upstream
    url: str
    mode: str


@pytest.fixture(params=sorted(MODES))
async def traced(
    request: pytest.FixtureRequest, redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> AsyncIterator[TracedStack]:
    receiver = await OtlpReceiver().start()
    env = {
        "GATEKEEPER_REDIS_URL": redis_target.url,
        "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    config = parse_tracing_env(env, service_name="gatekeeper")
    assert config is not None
    tracing = Tracing(config)
    app = await App(load_config(POLICY, env=env), tracing=tracing).start(
        host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
    )
    upstream = await Upstream().start()
    try:
        with front_proxy(  # the generator's bootstrap with Envoy's OpenTelemetry tracer on
            request.param,
            grpc_port=app.grpc_port,
            authz_http_port=app.authz_http_port,
            upstream_port=upstream.port,
            authz_timeout=timedelta(seconds=5),  # a loaded 2-core machine answers slowly
            otel_collector=Address("127.0.0.1", receiver.port),
        ) as envoy:
            yield TracedStack(app, tracing, receiver, upstream, envoy.url, request.param)
    finally:
        await upstream.stop()
        await app.stop(0.5)
        await tracing.aclose()
        await receiver.stop()


async def flush(tracing: Tracing) -> None:
    """Export what gatekeeper queued; in a thread: the receiver answers on this event loop."""
    await asyncio.to_thread(tracing.provider.force_flush, 2_000)


def _by_id(spans: list[ReceivedSpan]) -> dict[bytes, ReceivedSpan]:
    return {s.span.span_id: s for s in spans}


async def test_one_request_is_one_trace_envoy_then_decision_then_redis(
    traced: TracedStack, redis: Redis
) -> None:
    async with (
        client() as s,
        s.post(
            traced.url + "/v1/chat/completions", headers={"x-api-key": API_KEY}, json={"p": "hi"}
        ) as r,
    ):
        assert r.status == 200, await r.text()
    decision_id = traced.upstream.seen_headers[-1]["x-gatekeeper-decision-id"]
    name = SPAN_NAMES[traced.mode]

    async def complete() -> bool:
        await flush(traced.tracing)
        spans = traced.receiver.spans()
        mine = [s for s in spans if s.service == "gatekeeper"]
        envoy = [s for s in spans if s.service == "envoy"]
        return len(mine) >= 2 and any(  # Envoy's ingress span: the last one it ends
            s.span.kind == s.span.SPAN_KIND_SERVER for s in envoy
        )

    assert await wait_for(complete, timeout_s=15, interval_s=0.1), traced.receiver.spans()
    spans = traced.receiver.spans()
    ids = _by_id(spans)
    (decision,) = [s for s in spans if s.service == "gatekeeper" and s.span.name == name]
    (redis_span,) = [
        s for s in spans if s.service == "gatekeeper" and s.span.name.startswith("EVALSHA")
    ]

    # one trace id
    assert len({s.span.trace_id for s in spans}) == 1
    # the Redis call is a child of the decision
    assert redis_span.span.parent_span_id == decision.span.span_id
    assert redis_span.span.kind == redis_span.span.SPAN_KIND_CLIENT
    assert redis_span.attributes()["db.system"] == "redis"
    assert redis_span.attributes()["db.operation"] == "EVALSHA"
    # the decision's parent is Envoy's: its ext_authz call span, child of the ingress span
    parent = ids[decision.span.parent_span_id]
    assert parent.service == "envoy"
    chain = [parent]
    while chain[-1].span.parent_span_id in ids and len(chain) < 5:
        chain.append(ids[chain[-1].span.parent_span_id])
    assert chain[-1].span.kind == chain[-1].span.SPAN_KIND_SERVER  # Envoy's ingress span
    assert decision.span.kind == decision.span.SPAN_KIND_SERVER
    attributes = decision.attributes()
    assert attributes["gatekeeper.customer"] == "busy"
    assert attributes["gatekeeper.outcome"] == "allowed"
    assert attributes["gatekeeper.decision_id"] == decision_id
    assert "chat_requests" in attributes["gatekeeper.features"]
    # never key material, in any exported byte (Envoy's or gatekeeper's)
    assert traced.receiver.bodies
    assert not any(API_KEY.encode() in body for body in traced.receiver.bodies)
    assert all(t == "application/x-protobuf" for t in traced.receiver.content_types)

    # the usage event carries the decision span's context, for the worker's links
    keys = traced.app.engine._store.keys  # type: ignore[union-attr,attr-defined]
    raw = await redis.xrange(keys.usage_stream(keys.partition("busy")))
    events = [UsageEvent.from_fields(f) for _, f in raw]
    mine = [e for e in events if e.decision_id == decision_id]
    assert mine
    context = parse(mine[0].traceparent)
    assert context is not None
    assert context.span_id == int.from_bytes(decision.span.span_id, "big")
    assert context.trace_id == int.from_bytes(decision.span.trace_id, "big")


async def test_a_client_traceparent_is_continued(traced: TracedStack) -> None:
    """A caller that already traces: Envoy continues its trace, and so does gatekeeper."""
    trace_id = int(time.time() * 1e6) | (1 << 100)
    sent = f"00-{trace_id:032x}-{0x1234567890ABCDEF:016x}-01"
    headers = {"x-api-key": API_KEY, "traceparent": sent}
    async with (
        client() as s,
        s.post(traced.url + "/v1/chat/completions", headers=headers, json={"p": "hi"}) as r,
    ):
        assert r.status == 200

    async def decided() -> bool:
        await flush(traced.tracing)
        return any(s.span.name == SPAN_NAMES[traced.mode] for s in traced.receiver.spans())

    assert await wait_for(decided, timeout_s=15, interval_s=0.1)
    (decision,) = [s for s in traced.receiver.spans() if s.span.name == SPAN_NAMES[traced.mode]]
    assert int.from_bytes(decision.span.trace_id, "big") == trace_id
