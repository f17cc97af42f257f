"""Plan templates never change an answer: they follow policy swaps, windows, grant expiries."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from redis.asyncio import Redis

from gatekeeper.engine import DecisionRequest, MeterRequest, Outcome
from gatekeeper.engine.plan import DecisionPlan
from gatekeeper.engine.templates import PlanTemplate, TemplateCache
from gatekeeper.model import Period, Policy
from tests.engine.harness import START, make_harness
from tests.engine.policies import cap, flat, grant, metered, plan, policy


def req(feature: str = "requests", quantity: int = 1) -> DecisionRequest:
    return DecisionRequest("cust", meters=(MeterRequest(feature, quantity),))


async def test_a_new_policy_applies_to_the_very_next_decision(
    redis: Redis, key_prefix: str
) -> None:
    h = make_harness(redis, policy(plan("p", metered("requests", 1))), key_prefix)
    assert (await h.engine.decide(req())).allowed
    assert not (await h.engine.decide(req())).allowed
    h.source.replace(policy(plan("p", metered("requests", 3))))
    d = await h.engine.decide(req())
    assert d.allowed and d.limits[0].limit == 3


async def test_crossing_a_window_end_counts_in_the_new_window(
    redis: Redis, key_prefix: str
) -> None:
    h = make_harness(
        redis, policy(plan("p", metered("requests", 1, period=Period.HOUR))), key_prefix
    )
    assert (await h.engine.decide(req())).allowed
    h.clock.set(START + timedelta(minutes=59, seconds=59))
    assert (await h.engine.decide(req())).outcome is Outcome.QUOTA_EXHAUSTED
    h.clock.set(START + timedelta(hours=1))
    d = await h.engine.decide(req())
    assert d.allowed and d.limits[0].reset_at == START + timedelta(hours=2)
    h.clock.set(START + timedelta(minutes=30))  # a clock set back plans the old window again
    assert (await h.engine.decide(req())).outcome is Outcome.QUOTA_EXHAUSTED


async def test_an_expired_grant_stops_paying_at_its_expiry(redis: Redis, key_prefix: str) -> None:
    expiry = START + timedelta(minutes=10)
    pol = policy(
        plan("p", metered("tokens", None)),
        prices=(flat("tokens", 1_000),),
        grants=(grant("g", "tokens", 100, expiry),),
    )
    h = make_harness(redis, pol, key_prefix)
    assert (await h.engine.decide(req("tokens", 5))).cost_nano == 0  # paid by the grant
    h.clock.set(expiry - timedelta(microseconds=1))
    assert (await h.engine.decide(req("tokens", 5))).cost_nano == 0
    h.clock.set(expiry)
    assert (await h.engine.decide(req("tokens", 5))).cost_nano == 5_000
    assert [e["granted"] for e in await h.events()] == ["5", "5", "0"]


async def test_counters_expire_at_their_window_end_plus_grace(
    redis: Redis, key_prefix: str
) -> None:
    pol = policy(
        plan("p", metered("requests", 10, period=Period.HOUR), spend_cap=cap(10**9)),
        prices=(flat("requests", 1_000),),
        grants=(grant("g", "requests", 1, START + timedelta(minutes=5)),),
    )
    h = make_harness(redis, pol, key_prefix, period_grace_s=60)
    h.clock.set(START + timedelta(minutes=15))
    assert (await h.engine.decide(req(quantity=2))).allowed  # the grant expired: all billable
    h.clock.set(START)
    assert (await h.engine.decide(req(quantity=2))).allowed  # an earlier `now`: grant pays 1
    quota = await redis.pttl(h.store.keys.quota("cust", "requests", "202611241200"))
    assert 45 * 60_000 + 60_000 - 5_000 < quota <= 45 * 60_000 + 60_000  # end - first now + grace
    spend = await redis.pttl(h.store.keys.spend("cust", "202611010000"))
    month_left_ms = (START.replace(month=12, day=1, hour=0) - START).total_seconds() * 1000
    assert month_left_ms - 15 * 60_000 + 60_000 - 5_000 < spend <= month_left_ms + 60_000
    granted = await redis.pttl(h.store.keys.grant("cust", "g"))
    assert 5 * 60_000 + 60_000 - 5_000 < granted <= 5 * 60_000 + 60_000


def test_the_cache_is_bounded_and_emptied_by_a_new_policy() -> None:
    cache = TemplateCache(max_entries=2)
    a = policy(plan("p", metered("requests", 1)))
    b = policy(plan("p", metered("requests", 2)))
    cust = a.customers["cust"]
    assert cache.get(a, cust, ("x", (), ()), START) is None
    assert len(cache) == 0
    for n in range(3):
        cache.put((f"c{n}", (), ()), _template(a))
    assert len(cache) == 2 and cache.get(a, cust, ("c0", (), ()), START) is None
    assert cache.get(a, cust, ("c2", (), ()), START) is not None
    assert cache.get(b, cust, ("c2", (), ()), START) is None and len(cache) == 0


def test_a_changed_customer_gets_its_templates_planned_again() -> None:
    cache = TemplateCache()
    a = policy(plan("p", metered("requests", 1)))
    cust = a.customers["cust"]
    cache.get(a, cust, ("cust", (), ()), START)
    cache.put(("cust", (), ()), _template(a))
    assert cache.get(a, cust, ("cust", (), ()), START) is not None
    changed = replace(cust, billing_day=3)  # the source hands out a new object on a change
    assert cache.get(a, changed, ("cust", (), ()), START) is None


def _template(pol: Policy) -> PlanTemplate:
    customer = pol.customers["cust"]
    empty = DecisionPlan(customer.id, customer.plan, START, (), None, "USD")
    return PlanTemplate(policy=pol, customer=customer, plan=empty, config_values={})
