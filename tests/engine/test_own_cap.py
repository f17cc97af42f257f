"""A customer's own spend cap only ever tightens what its plan permits (DESIGN §3).

Under a plan whose cap blocks, the enforced cap blocks too, whatever action the own cap says;
and an own cap above the plan's ceiling (`max_customer_cap`, else the plan's amount) is
enforced at the ceiling, so a plan change or a lowered ceiling takes effect at once even for
caps set before it (they live in Redis beside the policy and are not re-validated).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from redis.asyncio import Redis

from gatekeeper.engine import DecisionEngine, DecisionRequest, MeterRequest, Outcome, StaticPolicy
from gatekeeper.model import CapAction, Customer, CustomerSpendCap, SpendCap
from tests.engine.harness import make_harness
from tests.engine.policies import flat, metered, plan, policy, with_cap

BLOCKING = SpendCap(1_000, 3_000, CapAction.BLOCK, (50,))
ALERTING = SpendCap(1_000, 3_000, CapAction.ALERT, (50,))


def _customer(plan_cap: SpendCap | None, own: CustomerSpendCap | None) -> Customer:
    return Customer("c", "p", plan("p", spend_cap=plan_cap), spend_cap=own)


@pytest.mark.parametrize(
    ("plan_cap", "own", "amount", "action"),
    [
        (BLOCKING, None, 1_000, CapAction.BLOCK),  # the plan's default
        (BLOCKING, CustomerSpendCap(2_000), 2_000, CapAction.BLOCK),  # within the ceiling
        (BLOCKING, CustomerSpendCap(500, CapAction.BLOCK), 500, CapAction.BLOCK),
        # an own cap cannot turn the plan's block into an alert
        (BLOCKING, CustomerSpendCap(2_000, CapAction.ALERT), 2_000, CapAction.BLOCK),
        # an own cap above the ceiling is enforced at the ceiling
        (BLOCKING, CustomerSpendCap(9_000), 3_000, CapAction.BLOCK),
        (BLOCKING, CustomerSpendCap(9_000, CapAction.ALERT), 3_000, CapAction.BLOCK),
        (SpendCap(1_000), CustomerSpendCap(9_000), 1_000, CapAction.BLOCK),  # no max: amount
        (SpendCap(1_000, 0), CustomerSpendCap(9_000), 0, CapAction.BLOCK),  # a zero ceiling
        # under an alerting plan the customer may alert, or tighten to block
        (ALERTING, CustomerSpendCap(2_000), 2_000, CapAction.ALERT),
        (ALERTING, CustomerSpendCap(2_000, CapAction.BLOCK), 2_000, CapAction.BLOCK),
        (ALERTING, CustomerSpendCap(9_000, CapAction.ALERT), 3_000, CapAction.ALERT),
        # no plan cap: the customer's own cap is all there is
        (None, CustomerSpendCap(9_000, CapAction.ALERT), 9_000, CapAction.ALERT),
        (None, CustomerSpendCap(9_000), 9_000, CapAction.BLOCK),
    ],
)
def test_effective_cap_never_loosens_the_plan(
    plan_cap: SpendCap | None, own: CustomerSpendCap | None, amount: int, action: CapAction
) -> None:
    cap = _customer(plan_cap, own).effective_spend_cap
    assert cap is not None and (cap.amount_nano, cap.action) == (amount, action)
    if plan_cap is not None:
        assert cap.alert_thresholds == plan_cap.alert_thresholds


def _req() -> DecisionRequest:
    return DecisionRequest("cust", meters=(MeterRequest("images", 1),))


async def _admitted(engine: DecisionEngine, tries: int) -> list[Outcome]:
    return [(await engine.decide(_req())).outcome for _ in range(tries)]


async def test_an_alerting_own_cap_under_a_blocking_plan_still_blocks(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("images", None), spend_cap=BLOCKING)
    h = make_harness(redis, policy(p, prices=(flat("images", 500),)), key_prefix)
    live = StaticPolicy(h.source.current())
    engine = DecisionEngine(policy=live, store=h.store, clock=h.clock)
    live.replace(with_cap(live.current(), "cust", CustomerSpendCap(2_000, CapAction.ALERT)))
    assert await _admitted(engine, 5) == [Outcome.ALLOWED] * 4 + [Outcome.SPEND_CAP]


async def test_an_own_cap_above_a_lowered_ceiling_is_enforced_at_the_ceiling(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("images", None), spend_cap=SpendCap(1_000, 10_000))
    h = make_harness(redis, policy(p, prices=(flat("images", 500),)), key_prefix)
    live = StaticPolicy(h.source.current())
    engine = DecisionEngine(policy=live, store=h.store, clock=h.clock)
    live.replace(with_cap(live.current(), "cust", CustomerSpendCap(8_000)))  # allowed when set
    assert await _admitted(engine, 2) == [Outcome.ALLOWED] * 2
    # the operator lowers the plan's ceiling to 2_000: the 8_000 cap no longer applies
    lowered = plan("p", metered("images", None), spend_cap=SpendCap(1_000, 2_000))
    base = live.current()  # the cap is kept across the plan change
    customers = {"cust": replace(base.customers["cust"], entitlements=lowered)}
    live.replace(replace(base, plans={"p": lowered}, customers=customers))
    assert await _admitted(engine, 3) == [Outcome.ALLOWED] * 2 + [Outcome.SPEND_CAP]
