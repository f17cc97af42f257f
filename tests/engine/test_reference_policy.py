"""The contract example behaves as its comments say (packaged demo.yaml == the reference)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from gatekeeper.config import load_config
from gatekeeper.engine import DecisionRequest, LimitKind, MeterRequest, Outcome
from gatekeeper.money import parse_nano
from tests.engine.harness import make_harness

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def example():  # type: ignore[no-untyped-def]
    return load_config(None, env={}).policy


def chat(customer: str, tokens: int = 2000) -> DecisionRequest:
    return DecisionRequest(
        customer,
        requires=("api_access",),
        meters=(MeterRequest("chat_requests", 1), MeterRequest("llm_tokens", tokens, reserve=True)),
    )


async def test_free_plan_daily_hard_limit_rate_limit_and_alerts(
    redis: Redis, key_prefix: str, example
) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(redis, example, key_prefix)
    h.clock.set(NOW)
    burst = [await h.engine.decide(chat("hobbyist", 10)) for _ in range(3)]
    assert [d.outcome for d in burst] == [Outcome.ALLOWED, Outcome.ALLOWED, Outcome.RATE_LIMITED]
    assert dict(burst[0].config_values) == {"x-model-tier": "small"}
    admitted = 2
    while admitted < 100:
        h.clock.advance(0.5)
        assert (await h.engine.decide(chat("hobbyist", 10))).allowed
        admitted += 1
    h.clock.advance(0.5)
    denied = await h.engine.decide(chat("hobbyist", 10))
    assert denied.outcome is Outcome.QUOTA_EXHAUSTED and denied.feature == "chat_requests"
    assert denied.denied_by is not None and denied.denied_by.reset_at == datetime(
        2026, 11, 25, tzinfo=UTC
    )
    alerts = [a for a in await h.alerts("hobbyist") if a["feature"] == "chat_requests"]
    assert [(a["kind"], int(a["threshold"])) for a in alerts] == [
        ("threshold", 50),
        ("threshold", 80),
        ("threshold", 100),
        ("blocked", 100),  # the first refusal: the customer is told it is cut off, and why
    ]
    assert alerts[-1]["cause"] == "quota_exhausted"


async def test_pro_override_soft_limit_anchored_to_billing_day(
    redis: Redis, key_prefix: str, example
) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(redis, example, key_prefix)
    h.clock.set(NOW)
    d = await h.engine.decide(chat("acme"))
    assert d.allowed and dict(d.config_values) == {"x-model-tier": "large"}
    quota = next(s for s in d.limits if s.kind is LimitKind.QUOTA and s.feature == "chat_requests")
    assert quota.limit == 250_000  # customer override, plan's period/enforcement kept
    assert quota.reset_at == datetime(2026, 12, 15, tzinfo=UTC)  # billing_day 15
    # the 1,000,000-token grant is used before the plan's limit and is not priced
    assert d.cost_nano == parse_nano("0.002")
    event = next(e for e in await h.events("acme") if e["feature"] == "llm_tokens")
    assert (event["granted"], event["billable"], event["type"]) == ("2000", "0", "reservation")


async def test_pro_spend_cap_of_customer_blocks_with_402(
    redis: Redis, key_prefix: str, example
) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(redis, example, key_prefix)
    h.clock.set(NOW)
    spend_key = h.store.keys.spend("acme", "202611150000")
    await redis.hset(spend_key, "u", parse_nano("249.998"))  # spent so far this billing period
    ok = await h.engine.decide(
        DecisionRequest("acme", ("api_access",), (MeterRequest("chat_requests", 1),))
    )
    assert ok.allowed
    denied = await h.engine.decide(
        DecisionRequest("acme", ("api_access",), (MeterRequest("chat_requests", 1),))
    )
    assert denied.outcome is Outcome.SPEND_CAP
    assert denied.denied_by is not None
    assert (denied.denied_by.limit, denied.denied_by.used) == (
        parse_nano("250.00"),
        parse_nano("250.00"),
    )


async def test_unknown_feature_and_free_token_limit(redis: Redis, key_prefix: str, example) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(redis, example, key_prefix)
    h.clock.set(NOW)
    big = await h.engine.decide(
        DecisionRequest("hobbyist", ("api_access",), (MeterRequest("llm_tokens", 50_001),))
    )
    assert big.outcome is Outcome.QUOTA_EXHAUSTED
    nope = await h.engine.decide(DecisionRequest("hobbyist", ("no_such_feature",)))
    assert nope.outcome is Outcome.NOT_ENTITLED
