"""Plan templates: what decisions of one customer and request shape plan, computed once.

A template holds the plan of (customer, required features, metered features) under one policy,
valid while `now` stays inside every window it counts in (quota, billed units, spend) and no
grant it depends on expires. Within that span two decisions differ only in `now` and their
quantities, so the engine instantiates the template instead of re-planning, and the store keeps
the encoded counters in the template's memo. A new policy object (LivePolicy/StaticPolicy swap
it on every catalog change) starts an empty cache; a changed customer (a new Customer object
from the policy source) gets its templates planned again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from gatekeeper.clock import from_us
from gatekeeper.engine.denials import RememberedDenial
from gatekeeper.engine.plan import DecisionPlan, MeterPlan, PlanMemo
from gatekeeper.engine.ports import ReplyRow
from gatekeeper.engine.types import LimitKind, LimitStatus
from gatekeeper.model import Customer, Policy
from gatekeeper.untrack import untrack

__all__ = ["PlanTemplate", "TemplateCache", "TemplateKey", "limit_status"]

TemplateKey = tuple[str, tuple[str, ...], tuple[tuple[str, bool], ...]]
"""(customer id, required features, (metered feature, reserve) per merged meter)."""

_ALWAYS = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
_ROW_KIND = {"q": LimitKind.QUOTA, "r": LimitKind.RATE, "s": LimitKind.SPEND}
_RESET_CACHE = 64  # window ends remembered per template (quota and spend rows)


def _seconds(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds())


def _row_meta(plan: DecisionPlan) -> dict[tuple[str, int, int], tuple[LimitKind, str | None, int]]:
    """(kind, meter, rate) of every reply row → (LimitKind, feature, window seconds)."""
    meta: dict[tuple[str, int, int], tuple[LimitKind, str | None, int]] = {}
    for j, m in enumerate(plan.meters, start=1):
        if m.quota is not None:
            meta["q", j, 0] = (LimitKind.QUOTA, m.feature, _seconds(*_span(m)))
        for k, r in enumerate(m.rates, start=1):
            meta["r", j, k] = (LimitKind.RATE, m.feature, r.window_s)
    if plan.spend is not None:
        w = plan.spend.window
        meta["s", 0, 0] = (LimitKind.SPEND, None, _seconds(w.start, w.end))
    return meta


def _span(m: MeterPlan) -> tuple[datetime, datetime]:
    assert m.quota is not None
    return m.quota.window.start, m.quota.window.end


def limit_status(plan: DecisionPlan, row: ReplyRow) -> LimitStatus:
    """One reply row as a LimitStatus (no template: usage reports, cold paths)."""
    kind, feature, window_s = _row_meta(plan)[row.kind, row.meter, row.rate]
    return LimitStatus(
        kind, feature, row.limit, row.used, row.remaining, from_us(row.reset_us), window_s
    )


def _validity(plan: DecisionPlan, customer: Customer) -> tuple[datetime, datetime]:
    """The span of `now` over which `plan` stays what the planner would build."""
    starts: list[datetime] = []
    ends: list[datetime] = []
    for m in plan.meters:
        for window in (m.quota.window if m.quota else None, m.billing):
            if window is not None:
                starts.append(window.start)
                ends.append(window.end)
    if plan.spend is not None:
        starts.append(plan.spend.window.start)
        ends.append(plan.spend.window.end)
    for g in customer.grants:  # a grant is in the plan until it expires
        if g.expires_at is not None:
            (ends if g.expires_at > plan.now else starts).append(g.expires_at)
    return max(starts, default=_ALWAYS[0]), min(ends, default=_ALWAYS[1])


class PlanTemplate:
    """The plan of one customer and request shape, and what answering with it needs."""

    __slots__ = (
        "_meta",
        "_resets",
        "config_values",
        "customer",
        "denial",
        "memo",
        "plan",
        "policy",
        "valid_from",
        "valid_until",
    )

    def __init__(
        self,
        *,
        policy: Policy,
        customer: Customer,
        plan: DecisionPlan,
        config_values: Mapping[str, str],
    ) -> None:
        self.policy = policy
        self.customer = customer
        self.plan = plan
        self.config_values = config_values
        self.valid_from, self.valid_until = _validity(plan, customer)
        self.memo = PlanMemo()
        self._meta = _row_meta(plan)
        self._resets: dict[int, datetime] = {}
        self.denial: RememberedDenial | None = None  # engine/denials.py

    def plan_for(self, now: datetime, quantities: Sequence[int]) -> DecisionPlan:
        """The plan at `now` (inside the validity span) for the merged meters' quantities;
        meters added for required rate-limited features keep their quantity of 1."""
        t = self.plan
        meters = list(t.meters)
        for i, q in enumerate(quantities):
            m = meters[i]
            if m.quantity != q:
                meters[i] = MeterPlan(
                    feature=m.feature,
                    unit=m.unit,
                    quantity=q,
                    emit=m.emit,
                    reserve=m.reserve,
                    grants=m.grants,
                    quota=m.quota,
                    rates=m.rates,
                    tiers=m.tiers,
                    billing=m.billing,
                )
        return DecisionPlan(
            customer_id=t.customer_id,
            plan=t.plan,
            now=now,
            meters=tuple(meters),
            spend=t.spend,
            currency=t.currency,
            memo=self.memo,
        )

    def status(self, row: ReplyRow) -> LimitStatus:
        kind, feature, window_s = self._meta[row.kind, row.meter, row.rate]
        if kind is LimitKind.RATE:
            reset_at = from_us(row.reset_us)
        else:  # a window end: the same for every decision of the template
            found = self._resets.get(row.reset_us)
            if found is None:
                if len(self._resets) >= _RESET_CACHE:
                    self._resets.clear()
                found = self._resets[row.reset_us] = from_us(row.reset_us)
            reset_at = found
        return LimitStatus(kind, feature, row.limit, row.used, row.remaining, reset_at, window_s)


_MUTABLE_PARTS = (PlanTemplate, PlanMemo)


class TemplateCache:
    """Bounded templates of the policy in force; a new policy object empties it.

    A template is immutable but for its memo and remembered denial (which never lead back to
    it), so it is taken off the cyclic collector's lists when kept (untrack.py): ~10 objects
    each that a full collection would otherwise walk, an event loop stall growing with the
    cache. A template is for one compiled Customer object, so holding more templates than the
    directory holds compiled customers (its `compiled_capacity`, 4,096 too) keeps only
    templates that can no longer match."""

    def __init__(self, max_entries: int = 4_096) -> None:
        self._max = max_entries
        self._policy: Policy | None = None
        self._entries: dict[TemplateKey, PlanTemplate] = {}

    def get(
        self, policy: Policy, customer: Customer, key: TemplateKey, now: datetime
    ) -> PlanTemplate | None:
        """The template of `key` if it was planned for this very `customer` object (a changed
        customer is a new object: its templates are planned again) and `now` is inside it."""
        if policy is not self._policy:
            self._policy = policy
            self._entries.clear()
            return None
        found = self._entries.get(key)
        if (
            found is None
            or found.customer is not customer
            or not (found.valid_from <= now < found.valid_until)
        ):
            return None
        return found

    def put(self, key: TemplateKey, template: PlanTemplate) -> PlanTemplate:
        if template.policy is not self._policy:
            return template  # planned under a policy replaced meanwhile: use once, keep none
        if len(self._entries) >= self._max and key not in self._entries:
            del self._entries[next(iter(self._entries))]  # the oldest
        untrack(template, also=_MUTABLE_PARTS, stop=(Policy,))
        untrack(key)  # atoms: CPython would untrack it too, at a full collection
        self._entries[key] = template
        return template

    def __len__(self) -> int:
        return len(self._entries)
