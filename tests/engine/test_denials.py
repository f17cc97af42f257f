"""Denials of counters known exhausted are answered locally, never an admission."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from gatekeeper.engine import (
    Decision,
    DecisionEngine,
    DecisionRequest,
    MeterRequest,
    Outcome,
    StaticPolicy,
)
from gatekeeper.model import CustomerSpendCap, Enforcement, Period, RateUnit, SpendCap
from tests.engine.harness import START, Harness, make_harness
from tests.engine.policies import cap, flat, grant, metered, plan, policy, rate, with_cap


def req(
    *meters: tuple[str, int] | tuple[str, int, bool], key: str | None = None
) -> DecisionRequest:
    return DecisionRequest(
        "cust", meters=tuple(MeterRequest(*m) for m in meters), idempotency_key=key
    )


def count_store_calls(h: Harness) -> list[int]:
    """A one-element list counting the decisions that reached Redis."""
    calls = [0]
    original = h.store.decide

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await original(*args, **kwargs)

    h.store.decide = counted  # type: ignore[method-assign]
    return calls


def shape(d: Decision) -> tuple[object, ...]:
    return (d.outcome, d.feature, d.denied_by, d.retry_after_s, d.limits, dict(d.config_values))


async def test_an_exhausted_hard_quota_denies_locally_with_the_same_answer(
    redis: Redis, key_prefix: str
) -> None:
    h = make_harness(
        redis, policy(plan("p", metered("requests", 2, period=Period.HOUR))), key_prefix
    )
    calls = count_store_calls(h)
    assert [(await h.engine.decide(req(("requests", 1)))).allowed for _ in range(2)] == [True] * 2
    first = await h.engine.decide(req(("requests", 1)))
    assert first.outcome is Outcome.QUOTA_EXHAUSTED and calls == [3]
    local = [await h.engine.decide(req(("requests", 1))) for _ in range(5)]
    assert calls == [3] and h.engine.denied_locally == 5
    assert all(shape(d) == shape(first) for d in local)
    assert len({d.decision_id for d in local} | {first.decision_id}) == 6
    h.clock.advance(timedelta(milliseconds=400))
    later = await h.engine.decide(req(("requests", 1)))
    assert later.retry_after_s == pytest.approx(first.retry_after_s - 0.4) and calls == [3]
    assert len(await h.events()) == 2  # denials leave no usage event


async def test_a_request_not_consuming_the_counter_still_goes_to_redis(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("requests", 1), metered("tokens", None))
    h = make_harness(redis, policy(p), key_prefix)
    calls = count_store_calls(h)
    await h.engine.decide(req(("requests", 1), ("tokens", 1)))
    assert not (await h.engine.decide(req(("requests", 1), ("tokens", 1)))).allowed
    assert (await h.engine.decide(req(("requests", 0), ("tokens", 1)))).allowed
    assert calls == [3]


async def test_window_end_policy_change_and_ttl_send_the_next_decision_to_redis(
    redis: Redis, key_prefix: str
) -> None:
    h = make_harness(
        redis, policy(plan("p", metered("requests", 1, period=Period.HOUR))), key_prefix
    )
    calls = count_store_calls(h)
    await h.engine.decide(req(("requests", 1)))
    await h.engine.decide(req(("requests", 1)))  # denied by Redis, remembered
    await h.engine.decide(req(("requests", 1)))
    assert calls == [2]
    h.clock.advance(timedelta(seconds=1))  # the remembered denial lives at most 1 s
    assert not (await h.engine.decide(req(("requests", 1)))).allowed and calls == [3]
    h.clock.set(START + timedelta(hours=1))  # a new window
    assert (await h.engine.decide(req(("requests", 1)))).allowed and calls == [4]
    assert not (await h.engine.decide(req(("requests", 1)))).allowed and calls == [5]
    h.source.replace(policy(plan("p", metered("requests", 2, period=Period.HOUR))))
    assert (await h.engine.decide(req(("requests", 1)))).allowed and calls == [6]


async def test_a_refund_settled_here_forgets_the_denial(redis: Redis, key_prefix: str) -> None:
    h = make_harness(redis, policy(plan("p", metered("tokens", 100))), key_prefix)
    calls = count_store_calls(h)
    reserved = await h.engine.decide(req(("tokens", 100, True)))
    assert reserved.allowed and reserved.reservation_id
    assert not (await h.engine.decide(req(("tokens", 1)))).allowed
    assert not (await h.engine.decide(req(("tokens", 1)))).allowed
    assert calls == [2]
    await h.engine.settle("cust", reserved.reservation_id, {"tokens": 60})
    assert (await h.engine.decide(req(("tokens", 40)))).allowed and calls == [3]


async def test_idempotent_and_forced_requests_always_reach_redis(
    redis: Redis, key_prefix: str
) -> None:
    h = make_harness(redis, policy(plan("p", metered("requests", 1))), key_prefix)
    calls = count_store_calls(h)
    first = await h.engine.decide(req(("requests", 1), key="k1"))
    assert first.allowed
    assert not (await h.engine.decide(req(("requests", 1)))).allowed  # remembered
    replay = await h.engine.decide(req(("requests", 1), key="k1"))
    assert replay.allowed and replay.replayed and replay.decision_id == first.decision_id
    forced = await h.engine.decide(req(("requests", 1)), force=True)
    assert forced.allowed
    assert calls == [4] and h.engine.denied_locally == 0


async def test_a_reached_spend_cap_denies_locally_only_what_certainly_costs(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("images", None), metered("requests", None), spend_cap=cap(1_000))
    h = make_harness(redis, policy(p, prices=(flat("images", 500),)), key_prefix)
    calls = count_store_calls(h)
    assert (await h.engine.decide(req(("images", 2)))).allowed
    first = await h.engine.decide(req(("images", 1)))
    assert first.outcome is Outcome.SPEND_CAP
    again = await h.engine.decide(req(("images", 1)))
    assert shape(again) == shape(first) and calls == [2]
    # unpriced units cost nothing: Redis admits them
    assert (await h.engine.decide(req(("images", 0), ("requests", 3)))).allowed
    assert calls == [3]


async def test_grants_soft_limits_and_rate_limits_are_never_remembered(
    redis: Redis, key_prefix: str
) -> None:
    p = plan(
        "p",
        metered("tokens", 1),
        metered("requests", 1, enforcement=Enforcement.SOFT),
        metered("images", None),
        rates=(rate("images", 1, RateUnit.MINUTE),),
    )
    pol = policy(p, grants=(grant("g", "tokens", 5, START + timedelta(days=1)),))
    h = make_harness(redis, pol, key_prefix)
    calls = count_store_calls(h)
    for _ in range(3):  # the grant may pay: always Redis
        await h.engine.decide(req(("tokens", 3)))
    for _ in range(3):  # soft: admitted past the limit
        assert (await h.engine.decide(req(("requests", 1)))).allowed
    for _ in range(3):  # a bucket refills
        await h.engine.decide(req(("images", 1)))
    assert calls == [9] and h.engine.denied_locally == 0


async def test_a_cap_raised_through_live_policy_is_seen_at_once(
    redis: Redis, key_prefix: str
) -> None:
    # the customer may raise its own cap up to max_customer_cap (2_000), never above
    p = plan("p", metered("images", None), spend_cap=SpendCap(1_000, 2_000))
    h = make_harness(redis, policy(p, prices=(flat("images", 500),)), key_prefix)
    live = StaticPolicy(h.source.current())
    engine = DecisionEngine(policy=live, store=h.store, clock=h.clock)
    calls = count_store_calls(h)
    assert (await engine.decide(req(("images", 2)))).allowed
    assert (await engine.decide(req(("images", 1)))).outcome is Outcome.SPEND_CAP
    assert (await engine.decide(req(("images", 1)))).outcome is Outcome.SPEND_CAP
    assert calls == [2] and engine.denied_locally == 1
    live.replace(with_cap(live.current(), "cust", CustomerSpendCap(2_000)))
    assert (await engine.decide(req(("images", 1)))).allowed and calls == [3]
