"""Local short-circuit of denials: a counter known exhausted for its window denies without Redis.

Kept on a plan template (one customer, request shape and window span, one policy object), so a
policy change or a window end drops it. A remembered denial answers a later decision only when
Redis would certainly deny it too:
- a HARD quota (a ceiling) whose used count had reached the ceiling, for a request consuming
  > 0 units of it and no grant could pay for them (meters with grants are never remembered);
- a blocking spend cap already reached, for a request certainly costing > 0 (a metered quantity
  with no grants and only positive tier prices).
Never an admission, never a rate limit (buckets refill), never a forced or idempotent request
(an idempotency key's first decision must be answered by Redis: it may replay an admission).
Other processes may refund a counter (settlements): a remembered denial lives at most TTL_S,
and a refund settled in this process forgets its customer's denials at once (generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gatekeeper.engine.plan import DecisionPlan, MeterPlan
from gatekeeper.engine.types import Decision, LimitKind, Outcome

__all__ = ["TTL", "RememberedDenial", "remember"]

TTL = timedelta(seconds=1)


def _certainly_costs(m: MeterPlan) -> bool:
    return not m.grants and bool(m.tiers) and all(t.unit_price_nano > 0 for t in m.tiers)


@dataclass(frozen=True, slots=True)
class RememberedDenial:
    decision: Decision  # the answer Redis gave (its id and retry-after are replaced)
    meters: tuple[int, ...]  # 0-based meters whose quantity > 0 makes the denial certain
    since: datetime
    until: datetime  # min(since + TTL, end of the exhausted counter's window)
    generation: int  # the customer's refund generation when remembered

    def answer(self, plan: DecisionPlan, decision_id: str, generation: int) -> Decision | None:
        """The denial for `plan` at plan.now, or None when Redis must be asked."""
        now = plan.now
        if generation != self.generation or not (self.since <= now < self.until):
            return None
        if not any(plan.meters[i].quantity > 0 for i in self.meters):
            return None
        d = self.decision
        assert d.denied_by is not None
        retry = max(d.denied_by.reset_at - now, timedelta(0)).total_seconds()
        return Decision(
            decision_id,
            d.outcome,
            d.customer_id,
            plan=d.plan,
            feature=d.feature,
            limits=d.limits,
            denied_by=d.denied_by,
            retry_after_s=retry,
            config_values=d.config_values,
        )


def remember(plan: DecisionPlan, decision: Decision, generation: int) -> RememberedDenial | None:
    """A denial worth remembering (see the module docstring), else None."""
    denied = decision.denied_by
    if denied is None or decision.replayed:
        return None
    meters: tuple[int, ...] = ()
    if decision.outcome is Outcome.QUOTA_EXHAUSTED and denied.kind is LimitKind.QUOTA:
        for i, m in enumerate(plan.meters):
            q = m.quota
            if m.feature != denied.feature or q is None:
                continue
            if q.ceiling is not None and not m.grants and denied.used >= q.ceiling:
                meters = (i,)
            break
    elif decision.outcome is Outcome.SPEND_CAP and denied.kind is LimitKind.SPEND:
        spend = plan.spend
        if spend is not None and spend.block and spend.cap is not None and denied.used >= spend.cap:
            meters = tuple(i for i, m in enumerate(plan.meters) if _certainly_costs(m))
    if not meters:
        return None
    until = min(plan.now + TTL, denied.reset_at)
    return RememberedDenial(decision, meters, plan.now, until, generation)
