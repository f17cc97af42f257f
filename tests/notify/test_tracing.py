"""Tracing on: each webhook delivery attempt is a CLIENT span linked to the decision whose
alerts it carries (the decision's traceparent rides in the alert stream entry)."""

from __future__ import annotations

import asyncio

from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

from gatekeeper.engine import DecisionEngine, StaticPolicy
from gatekeeper.notify import generate_secret
from gatekeeper.settings import RedisSettings
from gatekeeper.store import RedisDecisionStore
from tests.notify.helpers import customers_policy, endpoint, make_notifier, req, wall_clock
from tests.notify.receiver import WebhookReceiver
from tests.tracing.support import memory_tracing, named


async def test_delivery_spans_link_to_the_decision(redis: Redis, key_prefix: str) -> None:
    async with asyncio.timeout(30):
        tracing, spans = memory_tracing()
        store = RedisDecisionStore(
            redis=redis, settings=RedisSettings(key_prefix=key_prefix, partitions=16),
            tracer=tracing,
        )  # fmt: skip
        policy = customers_policy(["acme"])
        engine = DecisionEngine(policy=StaticPolicy(policy), store=store, clock=wall_clock())
        with tracing.decision("decision", None) as scope:  # 40 of 50: alerts at 50 % and 80 %
            assert (await engine.decide(req("acme", 40))).allowed
        decision = scope.span.get_span_context()
        secret = generate_secret()
        rx = await WebhookReceiver([secret], statuses=[500]).start()
        n = make_notifier(
            redis, key_prefix, [endpoint(rx.url, secret)], clock=wall_clock(), tracing=tracing
        )
        try:
            await n.drain()
        finally:
            await n.aclose()
            await rx.stop()
            tracing.shutdown()
        deliveries = named(spans, "webhook delivery")
        assert len(deliveries) == 2  # one per alert: the first answered 500
        for span in deliveries:
            assert span.kind is SpanKind.CLIENT
            assert span.parent is None
            assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
                (decision.trace_id, decision.span_id)
            ]
            assert (span.attributes or {})["gatekeeper.customer"] == "acme"
            assert rx.url not in repr(span.to_json())  # the endpoint by id, never its URL
        failed = [s for s in deliveries if (s.attributes or {})["http.response.status_code"] == 500]
        assert len(failed) == 1 and failed[0].status.status_code is StatusCode.ERROR
