"""Random sequences of decisions, settlements and clock moves agree with the reference model."""

from __future__ import annotations

import uuid
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.model import Enforcement, Period, RateUnit
from tests.engine.harness import START, make_harness
from tests.engine.policies import cap, flat, grant, metered, plan, policy, rate, tiered
from tests.engine.reference import Model

POLICY = policy(
    plan(
        "p",
        metered("requests", 12, period=Period.HOUR),
        metered(
            "tokens", 2_000, period=Period.DAY, enforcement=Enforcement.SOFT, overage_allowance=500
        ),
        rates=(rate("requests", 4, RateUnit.SECOND), rate("tokens", 3_000, RateUnit.MINUTE)),
        spend_cap=cap(25_000),
    ),
    prices=(flat("requests", 1_000), tiered("tokens", (1_000, 20), (None, 10))),
    grants=(
        grant("g-soon", "tokens", 300, START + timedelta(hours=2)),
        grant("g-late", "tokens", 200, START + timedelta(days=40)),
    ),
)

decide_op = st.tuples(st.just("decide"), st.integers(0, 3), st.integers(0, 900), st.booleans())
settle_op = st.tuples(st.just("settle"), st.integers(0, 20), st.integers(0, 1_200), st.just(False))
advance_op = st.tuples(
    st.just("advance"),
    st.sampled_from([0, 1, 250, 1_000, 60_000, 900_000, 3_600_000]),
    st.just(0),
    st.just(False),
)
ops = st.lists(st.one_of(decide_op, decide_op, settle_op, advance_op), min_size=1, max_size=25)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=ops)
async def test_engine_agrees_with_reference_model(
    redis: Redis, sequence: list[tuple[str, int, int, bool]]
) -> None:
    prefix = f"gkp-{uuid.uuid4().hex[:12]}"
    h = make_harness(redis, POLICY, prefix, reservation_ttl_s=600)
    model = Model(POLICY, reservation_ttl_s=600)
    reservations: list[str] = []
    try:
        for op, a, b, flag in sequence:
            now = h.clock.now()
            if op == "advance":
                h.clock.advance(timedelta(milliseconds=a))
            elif op == "decide":
                meters = {"requests": a, "tokens": b}
                request = DecisionRequest(
                    "cust",
                    meters=(MeterRequest("requests", a), MeterRequest("tokens", b, reserve=flag)),
                )
                d = await h.engine.decide(request)
                expected = model.decide(meters, {"tokens"} if flag else set(), now, d.decision_id)
                assert (d.allowed, d.cost_nano) == expected, (op, a, b, flag)
                if d.reservation_id:
                    reservations.append(d.reservation_id)
            elif reservations:
                rid = reservations[a % len(reservations)]
                s = await h.engine.settle("cust", rid, {"tokens": b})
                assert (s.status.value, s.cost_delta_nano) == model.settle(rid, {"tokens": b}, now)
        # final counters agree, and the usage events add up to the spend counter
        for (feature, win), used in model.quota.items():
            raw = await redis.hget(h.store.keys.quota("cust", feature, win), "u")
            assert int(raw or 0) == used, (feature, win)
        for win, spent in model.spend.items():
            raw = await redis.hget(h.store.keys.spend("cust", win), "u")
            assert int(raw or 0) == spent
        for gid, used in model.grants.items():
            assert int(await redis.hget(h.store.keys.grant("cust", gid), "u") or 0) == used
        events = await h.events()
        assert sum(int(e["amount_nano"]) for e in events) == sum(model.spend.values())
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
