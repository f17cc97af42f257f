"""The decision engine: the one question gatekeeper answers, transport-free.

`decide()` resolves the customer and its entitlements from the policy in force, plans the
counters the request touches, and has the store check-and-consume them in one atomic step.
`settle()` adjusts a reservation to the actual quantities. Time comes from the injected clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gatekeeper.clock import Clock
from gatekeeper.engine.plan import (
    DecisionPlan,
    MeterPlan,
    build_meter,
    build_spend,
)
from gatekeeper.engine.ports import DecideReply, DecisionStore, PolicySource, ReplyRow
from gatekeeper.engine.types import (
    Decision,
    DecisionRequest,
    LimitKind,
    LimitStatus,
    MeterRequest,
    Outcome,
    SettleResult,
    SettleStatus,
)
from gatekeeper.model import Customer, FeatureType, Policy, frozen_map

__all__ = ["DecisionEngine", "new_decision_id"]

MODE_DECIDE, MODE_FORCE, MODE_PEEK = 0, 1, 2

_DENY_OUTCOME = {
    "quota": Outcome.QUOTA_EXHAUSTED,
    "rate": Outcome.RATE_LIMITED,
    "spend": Outcome.SPEND_CAP,
}
_ROW_KIND = {"q": LimitKind.QUOTA, "r": LimitKind.RATE, "s": LimitKind.SPEND}


def new_decision_id() -> str:
    """Time-ordered unique id: 48-bit milliseconds + 80 random bits, 32 hex chars."""
    ms = int(datetime.now(tz=UTC).timestamp() * 1000)
    return f"{ms:012x}{secrets.token_hex(10)}"


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _merge(meters: tuple[MeterRequest, ...]) -> list[MeterRequest]:
    """One meter per feature: quantities of repeated features add up."""
    merged: dict[str, MeterRequest] = {}
    for m in meters:
        prev = merged.get(m.feature)
        if prev is None:
            merged[m.feature] = m
        else:
            merged[m.feature] = MeterRequest(
                m.feature, prev.quantity + m.quantity, prev.reserve or m.reserve
            )
    return list(merged.values())


class DecisionEngine:
    def __init__(
        self,
        *,
        policy: PolicySource,
        store: DecisionStore,
        clock: Clock,
        new_id: Callable[[], str] = new_decision_id,
    ) -> None:
        self._policy = policy
        self._store = store
        self._clock = clock
        self._new_id = new_id

    async def decide(
        self,
        request: DecisionRequest,
        *,
        force: bool = False,
        at: datetime | None = None,
        decision_id: str | None = None,
    ) -> Decision:
        """Admit or deny `request`, consuming all its counters or none.

        `force` records an admission made elsewhere (fail-open replay: `at` is when it was
        admitted, `decision_id` the id it was given): counters move, nothing is denied.
        Raises StoreUnavailable when the store cannot answer (the caller applies the
        configured failure mode). Never raises for a denial.
        """
        decision_id = decision_id or self._new_id()
        policy = self._policy.current()
        customer = policy.customers.get(request.customer_id)
        if customer is None:
            return Decision(decision_id, Outcome.UNKNOWN_CUSTOMER, request.customer_id)
        meters = _merge(request.meters)
        missing = self._not_entitled(policy, customer, request.requires, meters)
        if missing is not None:
            return Decision(
                decision_id,
                Outcome.NOT_ENTITLED,
                customer.id,
                plan=customer.plan,
                feature=missing,
                upgrade_hint=self._upgrade_hint(policy, missing),
            )
        now = at or self._clock.now()
        plan = self._plan(policy, customer, meters, request.requires, now)
        reply = await self._store.decide(
            plan,
            decision_id=decision_id,
            request_id=request.request_id,
            idempotency_key=request.idempotency_key,
            mode=MODE_FORCE if force else MODE_DECIDE,
        )
        return self._decision(policy, customer, plan, reply)

    async def usage(self, customer_id: str) -> tuple[LimitStatus, ...] | None:
        """Every counter of the customer now (quota, rate, spend), consuming nothing.

        None for an unknown customer. Raises StoreUnavailable.
        """
        policy = self._policy.current()
        customer = policy.customers.get(customer_id)
        if customer is None:
            return None
        ents = customer.entitlements
        meters = [MeterRequest(f, 0) for f in ents.metered]
        requires = tuple(r.feature for r in ents.rate_limits if r.feature not in ents.metered)
        plan = self._plan(policy, customer, meters, requires, self._clock.now())
        if plan.spend is None:
            plan = replace(plan, spend=build_spend(customer, plan.now))
        reply = await self._store.decide(
            plan, decision_id="peek", request_id="", idempotency_key=None, mode=MODE_PEEK
        )
        return tuple(self._status(plan, row) for row in reply.rows)

    async def settle(
        self,
        customer_id: str,
        reservation_id: str,
        actuals: Mapping[str, int],
        *,
        request_id: str = "",
    ) -> SettleResult:
        """Adjust reservation `reservation_id` (the decision id) to the actual quantities.

        Idempotent: a second settlement of the same reservation changes nothing (UNKNOWN).
        A reservation past its TTL stands at its estimate (EXPIRED).
        """
        policy = self._policy.current()
        customer = policy.customers.get(customer_id)
        if customer is None:
            return SettleResult(SettleStatus.UNKNOWN)
        reserved_at = await self._store.reservation_time(customer_id, reservation_id)
        if reserved_at is None:
            return SettleResult(SettleStatus.UNKNOWN)
        meters = [MeterRequest(f, q) for f, q in actuals.items() if f in policy.features]
        plan = self._plan(policy, customer, meters, (), reserved_at)
        reply = await self._store.settle(
            plan, decision_id=reservation_id, request_id=request_id, now=self._clock.now()
        )
        return SettleResult(
            SettleStatus(reply.status), deltas=reply.deltas, cost_delta_nano=reply.cost_delta_nano
        )

    @staticmethod
    def _not_entitled(
        policy: Policy, customer: Customer, requires: tuple[str, ...], meters: list[MeterRequest]
    ) -> str | None:
        ents = customer.entitlements
        for name in (*requires, *(m.feature for m in meters)):
            feature = policy.features.get(name)
            if feature is None or not ents.entitles(name):
                return name
            if feature.type is FeatureType.METERED and name not in ents.metered:
                return name
        return None

    @staticmethod
    def _upgrade_hint(policy: Policy, feature: str) -> str | None:
        plans = sorted(name for name, p in policy.plans.items() if p.entitles(feature))
        if not plans:
            return None
        return f"available on plan{'s' if len(plans) > 1 else ''} {', '.join(plans)}"

    @staticmethod
    def _plan(
        policy: Policy,
        customer: Customer,
        meters: list[MeterRequest],
        requires: tuple[str, ...],
        now: datetime,
    ) -> DecisionPlan:
        planned: list[MeterPlan] = []
        for m in meters:
            price = policy.prices.get(m.feature)
            planned.append(
                build_meter(
                    customer=customer,
                    feature=policy.features[m.feature],
                    quantity=m.quantity,
                    reserve=m.reserve,
                    tiers=price.tiers if price else (),
                    now=now,
                )
            )
        metered = {m.feature for m in meters}
        rate_limited = {r.feature for r in customer.entitlements.rate_limits}
        for name in requires:
            if name in rate_limited and name not in metered:
                metered.add(name)
                planned.append(
                    build_meter(
                        customer=customer,
                        feature=policy.features[name],
                        quantity=1,
                        reserve=False,
                        tiers=(),
                        now=now,
                    )
                )
        priced = any(m.tiers for m in planned)
        return DecisionPlan(
            customer_id=customer.id,
            plan=customer.plan,
            now=now,
            meters=tuple(planned),
            spend=build_spend(customer, now) if priced else None,
            currency=policy.currency,
        )

    @staticmethod
    def _status(plan: DecisionPlan, row: ReplyRow) -> LimitStatus:
        kind = _ROW_KIND[row.kind]
        feature: str | None = None
        if kind is LimitKind.SPEND:
            assert plan.spend is not None
            window = plan.spend.window
            window_s = int((window.end - window.start).total_seconds())
        else:
            meter = plan.meters[row.meter - 1]
            feature = meter.feature
            if kind is LimitKind.RATE:
                window_s = meter.rates[row.rate - 1].window_s
            else:
                assert meter.quota is not None
                window = meter.quota.window
                window_s = int((window.end - window.start).total_seconds())
        return LimitStatus(
            kind=kind,
            feature=feature,
            limit=row.limit,
            used=row.used,
            remaining=row.remaining,
            reset_at=_from_us(row.reset_us),
            window_s=window_s,
        )

    def _decision(
        self, policy: Policy, customer: Customer, plan: DecisionPlan, reply: DecideReply
    ) -> Decision:
        statuses = tuple(self._status(plan, row) for row in reply.rows)
        config_values = frozen_map(
            {
                (policy.features[name].header or name): value
                for name, value in customer.entitlements.config_values.items()
            }
        )
        overage = tuple(plan.meters[i - 1].feature for i in reply.overage_meters)
        reservation = reply.decision_id if reply.reserved else None
        if reply.admitted:
            return Decision(
                reply.decision_id,
                Outcome.ALLOWED,
                customer.id,
                plan=customer.plan,
                limits=statuses,
                cost_nano=reply.cost_nano,
                overage=overage,
                reservation_id=reservation,
                replayed=reply.replayed,
                config_values=config_values,
            )
        denied_by = next(
            (
                s
                for s, row in zip(statuses, reply.rows, strict=True)
                if row.kind == reply.deny_kind[0]
                and row.meter == reply.deny_meter
                and row.rate == reply.deny_rate
            ),
            None,
        )
        feature = plan.meters[reply.deny_meter - 1].feature if reply.deny_meter else None
        return Decision(
            reply.decision_id,
            _DENY_OUTCOME[reply.deny_kind],
            customer.id,
            plan=customer.plan,
            feature=feature,
            limits=statuses,
            denied_by=denied_by,
            retry_after_s=max(reply.retry_after_us, 0) / 1_000_000,
            replayed=reply.replayed,
            config_values=config_values,
        )
