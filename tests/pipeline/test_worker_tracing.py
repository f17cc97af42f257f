"""Tracing on: the billing commit of a batch is a span linked to its events' decisions."""

from __future__ import annotations

from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from gatekeeper.billing import BillingCalendar, BillingStore
from gatekeeper.clock import ManualClock
from gatekeeper.engine import DecisionEngine, DecisionRequest, MeterRequest, StaticPolicy
from gatekeeper.pipeline import BillingWorker, WorkerOptions
from gatekeeper.settings import RedisSettings
from gatekeeper.store import RedisDecisionStore
from tests.engine.harness import START
from tests.pipeline import support
from tests.pipeline.support import PARTITIONS, keyspace
from tests.tracing.support import memory_tracing, named


async def test_billing_commit_links_to_each_traced_decision(
    redis: Redis, store: BillingStore, key_prefix: str
) -> None:
    tracing, spans = memory_tracing()
    policy = support.test_policy()
    decisions = RedisDecisionStore(
        redis=redis, settings=RedisSettings(key_prefix=key_prefix, partitions=PARTITIONS),
        tracer=tracing,
    )  # fmt: skip
    engine = DecisionEngine(policy=StaticPolicy(policy), store=decisions, clock=ManualClock(START))
    one = DecisionRequest("alpha", requires=("api_access",), meters=(MeterRequest("requests", 1),))
    traced = []
    for _ in range(2):
        with tracing.decision("decision", None) as scope:
            assert (await engine.decide(one)).allowed
        traced.append(scope.span.get_span_context())
    assert (await engine.decide(one)).allowed  # untraced: no decision span, no link
    worker = BillingWorker(
        redis=redis, store=store, keys=keyspace(key_prefix),
        calendar=BillingCalendar.of(policy), clock=ManualClock(START),
        options=WorkerOptions(batch=100, block_ms=50, trim_interval_s=0), tracing=tracing,
    )  # fmt: skip
    await worker.drain()
    tracing.shutdown()
    assert worker.stats.stored == 3
    (commit,) = named(spans, "billing commit")
    assert commit.kind is SpanKind.CONSUMER and commit.parent is None
    assert sorted((k.context.trace_id, k.context.span_id) for k in commit.links) == sorted(
        (c.trace_id, c.span_id) for c in traced
    )
    assert (commit.attributes or {})["gatekeeper.inserted"] == 3
