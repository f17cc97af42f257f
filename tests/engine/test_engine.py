"""Decision semantics against real Redis (embedded, and GATEKEEPER_REDIS_URL when set)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from gatekeeper.engine import DecisionRequest, LimitKind, MeterRequest, Outcome, SettleStatus
from gatekeeper.model import CapAction, CustomerSpendCap, Enforcement, Period
from tests.engine.harness import START, Harness, make_harness
from tests.engine.policies import cap, flat, grant, metered, plan, policy, rate, tiered


def req(
    *meters: tuple[str, int] | tuple[str, int, bool], key: str | None = None
) -> DecisionRequest:
    return DecisionRequest(
        "cust",
        requires=("api_access",),
        meters=tuple(MeterRequest(*m) for m in meters),
        idempotency_key=key,
    )


async def test_hard_limit_admits_exactly_limit_and_records_only_admitted(
    redis: Redis, key_prefix: str
) -> None:
    h = make_harness(redis, policy(plan("p", metered("requests", 3))), key_prefix)
    outcomes = [(await h.engine.decide(req(("requests", 1)))).outcome for _ in range(5)]
    assert outcomes == [Outcome.ALLOWED] * 3 + [Outcome.QUOTA_EXHAUSTED] * 2
    events = await h.events()
    assert [e["quantity"] for e in events] == ["1", "1", "1"]
    assert len({e["id"] for e in events}) == 3


async def test_denial_reports_limit_remaining_and_reset(redis: Redis, key_prefix: str) -> None:
    h = make_harness(
        redis, policy(plan("p", metered("requests", 2, period=Period.DAY))), key_prefix
    )
    await h.engine.decide(req(("requests", 2)))
    d = await h.engine.decide(req(("requests", 1)))
    assert d.outcome is Outcome.QUOTA_EXHAUSTED and d.feature == "requests"
    assert d.denied_by is not None
    assert (d.denied_by.kind, d.denied_by.limit, d.denied_by.remaining) == (LimitKind.QUOTA, 2, 0)
    assert d.denied_by.reset_at == START.replace(hour=0) + timedelta(days=1)
    assert d.retry_after_s == pytest.approx(12 * 3600)


async def test_request_larger_than_remaining_is_denied_whole(redis: Redis, key_prefix: str) -> None:
    h = make_harness(redis, policy(plan("p", metered("tokens", 100))), key_prefix)
    assert (await h.engine.decide(req(("tokens", 60)))).allowed
    assert not (await h.engine.decide(req(("tokens", 41)))).allowed
    assert (await h.engine.decide(req(("tokens", 40)))).allowed


async def test_all_or_nothing_across_counters(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("requests", 10), metered("tokens", 100))
    h = make_harness(redis, policy(p), key_prefix)
    assert not (await h.engine.decide(req(("requests", 1), ("tokens", 101)))).allowed
    d = await h.engine.decide(req(("requests", 1), ("tokens", 100)))
    by_feature = {s.feature: s.used for s in d.limits}
    assert by_feature == {"requests": 1, "tokens": 100}  # the denied request consumed nothing


async def test_soft_limit_admits_past_limit_and_flags_overage_once(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("requests", 2, enforcement=Enforcement.SOFT))
    h = make_harness(redis, policy(p), key_prefix)
    decisions = [await h.engine.decide(req(("requests", 1))) for _ in range(4)]
    assert all(d.allowed for d in decisions)
    assert [d.overage for d in decisions] == [(), (), ("requests",), ("requests",)]
    assert [e["overage"] for e in await h.events()] == ["0", "0", "1", "1"]
    assert [a["kind"] for a in await h.alerts()] == ["overage"]


async def test_overage_allowance_turns_soft_into_hard(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("requests", 3, enforcement=Enforcement.SOFT, overage_allowance=2))
    h = make_harness(redis, policy(p), key_prefix)
    outcomes = [(await h.engine.decide(req(("requests", 1)))).outcome for _ in range(7)]
    assert outcomes == [Outcome.ALLOWED] * 5 + [Outcome.QUOTA_EXHAUSTED] * 2


async def test_rate_limit_gcra_burst_then_spacing(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("requests", None), rates=(rate("requests", 2),))
    h = make_harness(redis, policy(p), key_prefix)
    assert [(await h.engine.decide(req(("requests", 1)))).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    denied = await h.engine.decide(req(("requests", 1)))
    assert denied.outcome is Outcome.RATE_LIMITED
    assert denied.retry_after_s == pytest.approx(0.5)
    h.clock.advance(0.5)
    assert (await h.engine.decide(req(("requests", 1)))).allowed
    assert not (await h.engine.decide(req(("requests", 1)))).allowed
    h.clock.advance(1.0)
    assert [(await h.engine.decide(req(("requests", 1)))).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]


async def test_rate_limit_on_access_feature_counts_requests_without_events(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", rates=(rate("api_access", 1),))
    h = make_harness(redis, policy(p), key_prefix)
    first = await h.engine.decide(DecisionRequest("cust", requires=("api_access",)))
    second = await h.engine.decide(DecisionRequest("cust", requires=("api_access",)))
    assert (first.outcome, second.outcome) == (Outcome.ALLOWED, Outcome.RATE_LIMITED)
    assert await h.events() == []


async def test_spend_cap_blocks_before_overshoot(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("requests", None), spend_cap=cap(10_000))
    h = make_harness(redis, policy(p, prices=(flat("requests", 3_000),)), key_prefix)
    outcomes = [(await h.engine.decide(req(("requests", 1)))).outcome for _ in range(4)]
    assert outcomes == [Outcome.ALLOWED] * 3 + [Outcome.SPEND_CAP]
    d = await h.engine.decide(req(("requests", 1)))
    assert d.denied_by is not None and d.denied_by.kind is LimitKind.SPEND
    assert (d.denied_by.limit, d.denied_by.used, d.denied_by.remaining) == (10_000, 9_000, 1_000)
    assert sum(int(e["amount_nano"]) for e in await h.events()) == 9_000


async def test_spend_cap_alert_action_admits_and_alerts_once(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("requests", None), spend_cap=cap(5_000, CapAction.ALERT, (50, 100)))
    h = make_harness(redis, policy(p, prices=(flat("requests", 2_000),)), key_prefix)
    assert all([(await h.engine.decide(req(("requests", 1)))).allowed for _ in range(5)])
    kinds = [(a["kind"], a["threshold"], a["feature"]) for a in await h.alerts()]
    assert kinds == [("threshold", "50", ""), ("threshold", "100", ""), ("spend_cap", "100", "")]


async def test_customer_own_cap_overrides_plan_cap(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("requests", None), spend_cap=cap(100_000))
    pol = policy(p, prices=(flat("requests", 1_000),), own_cap=CustomerSpendCap(2_000))
    h = make_harness(redis, pol, key_prefix)
    assert [(await h.engine.decide(req(("requests", 1)))).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]


async def test_graduated_tiers_price_each_tier_once(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("tokens", None))
    h = make_harness(redis, policy(p, prices=(tiered("tokens", (100, 10), (None, 4)),)), key_prefix)
    d1 = await h.engine.decide(req(("tokens", 80)))
    d2 = await h.engine.decide(req(("tokens", 50)))  # 20 at 10, 30 at 4
    assert (d1.cost_nano, d2.cost_nano) == (800, 320)


async def test_grants_are_consumed_first_and_not_priced(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("tokens", 100))
    pol = policy(
        p,
        prices=(flat("tokens", 7),),
        grants=(
            grant("late", "tokens", 50, START + timedelta(days=30)),
            grant("soon", "tokens", 20, START + timedelta(days=1)),
            grant("gone", "tokens", 1_000, START - timedelta(days=1)),
        ),
    )
    h = make_harness(redis, pol, key_prefix)
    d = await h.engine.decide(req(("tokens", 100)))
    assert d.cost_nano == 30 * 7  # 20 from "soon", 50 from "late", 30 billable
    e = (await h.events())[0]
    assert (e["quantity"], e["granted"], e["billable"]) == ("100", "70", "30")
    assert (await h.engine.decide(req(("tokens", 70)))).allowed
    assert not (await h.engine.decide(req(("tokens", 1)))).allowed  # limit counts billable only


async def test_not_entitled_and_unknown_customer_touch_nothing(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("free", metered("requests", 10), access=())
    pro = plan("pro", metered("requests", 10), metered("images", 5))
    h = make_harness(redis, policy(p, extra_plans=(pro,)), key_prefix)
    d = await h.engine.decide(req(("requests", 1)))
    assert (d.outcome, d.feature) == (Outcome.NOT_ENTITLED, "api_access")
    d = await h.engine.decide(DecisionRequest("cust", meters=(MeterRequest("images", 1),)))
    assert (d.outcome, d.feature, d.upgrade_hint) == (
        Outcome.NOT_ENTITLED,
        "images",
        "available on plan pro",
    )
    d = await h.engine.decide(DecisionRequest("nobody", meters=(MeterRequest("requests", 1),)))
    assert d.outcome is Outcome.UNKNOWN_CUSTOMER
    assert [k async for k in redis.scan_iter(match=f"{key_prefix}:*")] == []


async def test_config_values_are_passed_by_header(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("requests", 10), access=("api_access", "tier"), config={"tier": "large"})
    h = make_harness(redis, policy(p), key_prefix)
    d = await h.engine.decide(req(("requests", 1)))
    assert dict(d.config_values) == {"x-model-tier": "large"}


async def test_idempotency_key_replays_first_decision_without_charging(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("requests", 5))
    h = make_harness(redis, policy(p, prices=(flat("requests", 1_000),)), key_prefix)
    first = await h.engine.decide(req(("requests", 1), key="order-42"))
    again = await h.engine.decide(req(("requests", 1), key="order-42"))
    other = await h.engine.decide(req(("requests", 1), key="order-43"))
    assert first.allowed and not first.replayed
    assert again.replayed and again.decision_id == first.decision_id and again.cost_nano == 1_000
    assert other.decision_id != first.decision_id
    events = await h.events()
    assert len(events) == 2 and events[0]["idempotency_key"] == "order-42"
    records = [k async for k in redis.scan_iter(match=f"{key_prefix}:*:i:cust:*")]
    assert len(records) == 2  # order-42 and order-43
    for record in records:
        assert 86_000_000 < await redis.pttl(record) <= 86_400_000


async def test_an_idempotency_record_of_the_earlier_text_format_still_replays(
    redis: Redis, key_prefix: str
) -> None:
    """Records live a day: one written before the flat-array reply ('|'-joined text) must
    replay after an upgrade, not be decided and charged again."""
    p = plan("p", metered("requests", 5))
    h = make_harness(redis, policy(p, prices=(flat("requests", 1_000),)), key_prefix)
    first = await h.engine.decide(req(("requests", 1), key="order-42"))
    (record,) = [k async for k in redis.scan_iter(match=f"{key_prefix}:*:i:cust:*")]
    q = next(s for s in first.limits if s.kind.value == "quota")
    reset_us = int(q.reset_at.timestamp() * 1_000_000)
    legacy = f"A|{first.decision_id}||0|0|0|1000||0|1|q|1|0|5|1|4|{reset_us}"
    await redis.set(record, legacy, px=60_000)
    again = await h.engine.decide(req(("requests", 1), key="order-42"))
    assert again.replayed and again.allowed and again.decision_id == first.decision_id
    assert again.cost_nano == 1_000 and again.limits == first.limits
    assert len(await h.events()) == 1  # nothing charged twice


async def test_an_idempotency_key_replays_only_the_same_route_and_usage(
    redis: Redis, key_prefix: str
) -> None:
    """A retry repeats its request; the same key on another request is decided and charged."""
    p = plan("p", metered("requests", 10), metered("tokens", None))
    h = make_harness(redis, policy(p, prices=(flat("tokens", 1),)), key_prefix)

    def keyed(route: str, tokens: int) -> DecisionRequest:
        meters = (MeterRequest("requests", 1), MeterRequest("tokens", tokens))
        return DecisionRequest("cust", meters=meters, idempotency_key="k", route=route)

    first = await h.engine.decide(keyed("POST /v1/chat", 10))
    retry = await h.engine.decide(keyed("POST /v1/chat", 10))
    bigger = await h.engine.decide(keyed("POST /v1/chat", 5_000))
    elsewhere = await h.engine.decide(keyed("POST /v1/embeddings", 10))
    assert retry.replayed and retry.decision_id == first.decision_id
    assert not bigger.replayed and bigger.decision_id != first.decision_id
    assert not elsewhere.replayed and elsewhere.decision_id not in (
        first.decision_id,
        bigger.decision_id,
    )
    events = await h.events()
    assert sorted(int(e["quantity"]) for e in events if e["feature"] == "tokens") == [10, 10, 5_000]
    usage = {(s.kind, s.feature): s.used for s in await h.engine.usage("cust") or ()}
    assert usage[LimitKind.QUOTA, "requests"] == 3


async def test_a_key_from_a_cheap_request_cannot_carry_an_expensive_one_past_the_cap(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("requests", None), metered("tokens", None), spend_cap=cap(5_000))
    h = make_harness(redis, policy(p, prices=(flat("tokens", 1),)), key_prefix)
    cheap = DecisionRequest(
        "cust", meters=(MeterRequest("requests", 1),), idempotency_key="k", route="GET /v1/models"
    )
    costly = DecisionRequest(
        "cust",
        meters=(MeterRequest("tokens", 1_000_000),),
        idempotency_key="k",
        route="POST /v1/embeddings",
    )
    assert (await h.engine.decide(cheap)).allowed
    denied = await h.engine.decide(costly)
    assert denied.outcome is Outcome.SPEND_CAP and not denied.replayed


async def test_idempotency_replays_a_denial_too(redis: Redis, key_prefix: str) -> None:
    h = make_harness(redis, policy(plan("p", metered("requests", 1))), key_prefix)
    await h.engine.decide(req(("requests", 1)))
    denied = await h.engine.decide(req(("requests", 1), key="k"))
    again = await h.engine.decide(req(("requests", 1), key="k"))
    assert again.replayed and again.outcome is Outcome.QUOTA_EXHAUSTED
    assert again.decision_id == denied.decision_id


async def test_reservation_settles_up_and_down_exactly_once(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("tokens", 10_000))
    h = make_harness(redis, policy(p, prices=(flat("tokens", 2),)), key_prefix)
    d = await h.engine.decide(req(("tokens", 2_000, True)))
    assert d.reservation_id == d.decision_id and d.cost_nano == 4_000
    down = await h.engine.settle("cust", d.decision_id, {"tokens": 1_500})
    assert (down.status, dict(down.deltas), down.cost_delta_nano) == (
        SettleStatus.SETTLED,
        {"tokens": -500},
        -1_000,
    )
    for actual in (1_500, 1_900):  # a retry (even with other actuals): the first answer again
        dup = await h.engine.settle("cust", d.decision_id, {"tokens": actual})
        assert dup == down
    never = await h.engine.settle("cust", "no-such-reservation", {"tokens": 1})
    assert never.status is SettleStatus.UNKNOWN
    d2 = await h.engine.decide(req(("tokens", 2_000, True)))
    up = await h.engine.settle("cust", d2.decision_id, {"tokens": 2_600})
    assert (dict(up.deltas), up.cost_delta_nano) == ({"tokens": 600}, 1_200)
    events = await h.events()
    assert [(e["type"], e["quantity"]) for e in events] == [
        ("reservation", "2000"),
        ("adjustment", "-500"),
        ("reservation", "2000"),
        ("adjustment", "600"),
    ]
    assert sum(int(e["quantity"]) for e in events) == 1_500 + 2_600
    assert sum(int(e["amount_nano"]) for e in events) == (1_500 + 2_600) * 2
    check = await h.engine.decide(req(("tokens", 0)))
    assert check.limits[0].used == 4_100


async def test_unsettled_reservation_expires_at_its_estimate(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("tokens", 10_000))
    h = make_harness(redis, policy(p), key_prefix, reservation_ttl_s=600)
    d = await h.engine.decide(req(("tokens", 2_000, True)))
    h.clock.advance(601)
    late = await h.engine.settle("cust", d.decision_id, {"tokens": 10})
    assert late.status is SettleStatus.EXPIRED
    assert (
        await h.engine.settle("cust", d.decision_id, {"tokens": 10})
    ).status is SettleStatus.EXPIRED  # a retry: the same answer, nothing more happens
    assert [e["type"] for e in await h.events()] == ["reservation"]
    check = await h.engine.decide(req(("tokens", 0)))
    assert check.limits[0].used == 2_000


async def test_settlement_after_rollover_adjusts_the_reserved_window(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("tokens", 10_000, period=Period.DAY))
    h = make_harness(redis, policy(p), key_prefix)
    h.clock.set(START.replace(hour=23, minute=59, second=59))
    d = await h.engine.decide(req(("tokens", 1_000, True)))
    h.clock.advance(2)  # next day
    await h.engine.settle("cust", d.decision_id, {"tokens": 400})
    old_window = h.store.keys.quota("cust", "tokens", START.strftime("%Y%m%d0000"))
    assert await redis.hget(old_window, "u") == b"400"
    fresh = await h.engine.decide(req(("tokens", 0)))
    assert fresh.limits[0].used == 0


async def test_period_rollover_starts_a_fresh_window(redis: Redis, key_prefix: str) -> None:
    h = make_harness(
        redis, policy(plan("p", metered("requests", 2, period=Period.HOUR))), key_prefix
    )
    h.clock.set(START.replace(minute=59, second=59))
    assert [(await h.engine.decide(req(("requests", 1)))).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    h.clock.advance(1)
    d = await h.engine.decide(req(("requests", 1)))
    assert d.allowed and d.limits[0].used == 1
    assert d.limits[0].reset_at == START.replace(hour=14, minute=0)
    keys = sorted([k.decode() async for k in redis.scan_iter(match=f"{key_prefix}:*:q:*")])
    assert [k.rsplit(":", 1)[1] for k in keys] == ["202611241200", "202611241300"]
    for k in keys:  # counters expire after their window (plus grace)
        assert 0 < await redis.pttl(k) <= (3600 + 3600) * 1000


async def test_raising_a_limit_keeps_the_count(redis: Redis, key_prefix: str) -> None:
    h = make_harness(redis, policy(plan("p", metered("requests", 2))), key_prefix)
    for _ in range(3):
        await h.engine.decide(req(("requests", 1)))
    h.source.replace(policy(plan("p", metered("requests", 4))))
    outcomes = [(await h.engine.decide(req(("requests", 1)))).outcome for _ in range(3)]
    assert outcomes == [Outcome.ALLOWED, Outcome.ALLOWED, Outcome.QUOTA_EXHAUSTED]


async def test_thresholds_fire_once_per_window(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("requests", 10, thresholds=(50, 80, 100), period=Period.HOUR))
    h = make_harness(redis, policy(p), key_prefix)
    await h.engine.decide(req(("requests", 6)))  # crosses 50
    await h.engine.decide(req(("requests", 4)))  # crosses 80 and 100
    await h.engine.decide(req(("requests", 1)))  # denied: the block episode opens
    await h.engine.decide(req(("requests", 1)))  # denied again: same episode, nothing
    h.clock.advance(3600)
    await h.engine.decide(req(("requests", 5)))  # new window: 50 again
    alerts = await h.alerts()
    assert [(a["kind"], a["threshold"], a["used"], a["limit"]) for a in alerts] == [
        ("threshold", "50", "6", "10"),
        ("threshold", "80", "10", "10"),
        ("threshold", "100", "10", "10"),
        ("blocked", "100", "10", "10"),
        ("threshold", "50", "5", "10"),
    ]
    assert alerts[3]["cause"] == "quota_exhausted"


async def test_store_unavailable_is_raised_not_swallowed(key_prefix: str) -> None:
    from gatekeeper.errors import StoreUnavailable

    client: Redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    h = make_harness(client, policy(plan("p", metered("requests", 2))), key_prefix)
    with pytest.raises(StoreUnavailable):
        await h.engine.decide(req(("requests", 1)))
    await client.aclose()


async def test_noscript_after_script_flush_mid_run(
    redis: Redis, key_prefix: str, redis_target
) -> None:  # type: ignore[no-untyped-def]
    if redis_target.name not in ("embedded", "cluster"):
        pytest.skip("SCRIPT FLUSH only on servers this test run owns")
    h: Harness = make_harness(redis, policy(plan("p", metered("requests", 10))), key_prefix)
    results = []
    for i in range(6):
        if i in (2, 4):
            await redis.script_flush()
        results.append((await h.engine.decide(req(("requests", 2)))).outcome)
    assert results == [Outcome.ALLOWED] * 5 + [Outcome.QUOTA_EXHAUSTED]
    assert len(await h.events()) == 5


async def test_forced_record_admits_past_limits_with_original_time(
    redis: Redis, key_prefix: str
) -> None:
    h = make_harness(redis, policy(plan("p", metered("requests", 1))), key_prefix)
    await h.engine.decide(req(("requests", 1)))
    at = START - timedelta(minutes=5)
    d = await h.engine.decide(req(("requests", 1)), force=True, at=at, decision_id="offline-1")
    assert d.allowed and d.decision_id == "offline-1"
    events = await h.events()
    assert [e["decision_id"] for e in events][-1] == "offline-1"
    assert events[-1]["time_us"] == str(int(at.timestamp() * 1_000_000))
    assert not (await h.engine.decide(req(("requests", 1)))).allowed


async def test_usage_peek_reports_counters_and_writes_nothing(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("requests", 10), rates=(rate("requests", 5),), spend_cap=cap(1_000_000))
    h = make_harness(redis, policy(p, prices=(flat("requests", 1_000),)), key_prefix)
    await h.engine.decide(req(("requests", 3)))
    before = sorted([k async for k in redis.scan_iter(match=f"{key_prefix}:*")])
    statuses = await h.engine.usage("cust")
    assert statuses is not None
    got = {(s.kind, s.feature): (s.limit, s.used, s.remaining) for s in statuses}
    assert got[(LimitKind.QUOTA, "requests")] == (10, 3, 7)
    assert got[(LimitKind.SPEND, None)] == (1_000_000, 3_000, 997_000)
    assert got[(LimitKind.RATE, "requests")][0] == 5
    assert sorted([k async for k in redis.scan_iter(match=f"{key_prefix}:*")]) == before
    assert len(await h.events()) == 1
    assert await h.engine.usage("nobody") is None


async def test_hard_limit_grace_admits_a_percentage_over_with_one_alert(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("requests", 10, grace_percent=20))
    h = make_harness(redis, policy(p), key_prefix)
    decisions = [await h.engine.decide(req(("requests", 1))) for _ in range(13)]
    assert [d.allowed for d in decisions] == [True] * 12 + [False]
    assert [d.overage for d in decisions[9:12]] == [(), ("requests",), ("requests",)]
    assert [a["kind"] for a in await h.alerts()] == ["overage", "blocked"]
    assert decisions[12].denied_by is not None and decisions[12].denied_by.limit == 10
