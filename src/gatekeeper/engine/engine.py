"""The decision engine: the one question gatekeeper answers, transport-free.

`decide()` resolves the customer and its entitlements from the policy in force, plans the
counters the request touches, and has the store check-and-consume them in one atomic step.
`settle()` adjusts a reservation to the actual quantities. Time comes from the injected clock.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from gatekeeper.clock import Clock
from gatekeeper.engine.denials import remember
from gatekeeper.engine.plan import (
    DecisionPlan,
    MeterPlan,
    build_meter,
    build_spend,
)
from gatekeeper.engine.ports import DecideReply, DecisionStore, PolicySource
from gatekeeper.engine.templates import PlanTemplate, TemplateCache, limit_status
from gatekeeper.engine.types import (
    Decision,
    DecisionRequest,
    GrantBalance,
    LimitStatus,
    MeterRequest,
    Outcome,
    SettleResult,
    SettleStatus,
)
from gatekeeper.model import NO_STRINGS, Customer, FeatureType, Policy, frozen_map

__all__ = ["DecisionEngine", "DecisionIds", "idempotency_scope", "new_decision_id"]

MODE_DECIDE, MODE_FORCE, MODE_PEEK = 0, 1, 2
MAX_REFUND_GENERATIONS = 100_000

_DENY_OUTCOME = {
    "quota": Outcome.QUOTA_EXHAUSTED,
    "rate": Outcome.RATE_LIMITED,
    "spend": Outcome.SPEND_CAP,
}


def _decision_id(random_hex: str) -> str:
    """Time-ordered unique id: 48-bit milliseconds + 80 random bits, 32 hex chars."""
    return f"{time.time_ns() // 1_000_000:012x}{random_hex}"


def new_decision_id() -> str:
    return _decision_id(secrets.token_hex(10))


def _empty_pool(ref: weakref.ref[DecisionIds]) -> None:
    ids = ref()
    if ids is not None:
        ids._pool, ids._at = "", 0


class DecisionIds:
    """new_decision_id() for the hot path: the same ids, with the random bits read from the OS
    CSPRNG 400 ids at a time (one `getrandom` system call per id was ~6 % of a decision's
    Python). A forked child starts with an empty pool, so parent and child never share bits."""

    _HEX_PER_ID = 20  # 80 bits
    _BATCH = 400

    def __init__(self) -> None:
        self._pool = ""
        self._at = 0
        os.register_at_fork(after_in_child=functools.partial(_empty_pool, weakref.ref(self)))

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool = os.urandom(self._HEX_PER_ID // 2 * self._BATCH).hex()
            at = 0
        self._at = at + self._HEX_PER_ID
        return _decision_id(self._pool[at : at + self._HEX_PER_ID])


def idempotency_scope(request: DecisionRequest, meters: list[MeterRequest]) -> str:
    """What a retry must repeat to replay a decision: route, required features, usage.

    The same idempotency key on another route, or with other quantities, is another request
    (decided and charged on its own): a key first sent on a cheap request cannot carry an
    expensive one past a limit or a spending cap."""
    usage = ",".join(f"{m.feature}:{m.quantity}:{int(m.reserve)}" for m in meters)
    return f"{request.route}\x1e{','.join(request.requires)}\x1e{usage}"


def _merge(meters: tuple[MeterRequest, ...]) -> list[MeterRequest]:
    """One meter per feature: quantities of repeated features add up."""
    if len({m.feature for m in meters}) == len(meters):  # the usual case: nothing to merge
        return list(meters)
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
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self._policy = policy
        self._store = store
        self._clock = clock
        self._new_id = new_id or DecisionIds()
        self._templates = TemplateCache()
        # customer -> refunds settled in this process: a remembered denial from an older
        # generation is not used (engine/denials.py)
        self._refunds: dict[str, int] = {}
        self._refund_base = 0
        self.denied_locally = 0  # decisions denied from a remembered denial, without Redis

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
        source = self._policy
        policy = source.current()
        customer = source.cached_customer(request.customer_id) or await source.customer(
            request.customer_id
        )
        if customer is None:
            return Decision(decision_id, Outcome.UNKNOWN_CUSTOMER, request.customer_id)
        now = at or self._clock.now()
        meters = _merge(request.meters)
        key = (
            request.customer_id,
            request.requires,
            tuple([(m.feature, m.reserve) for m in meters]),
        )
        template = self._templates.get(policy, customer, key, now)
        if template is None:
            found = self._new_template(policy, customer, request, meters, now, decision_id)
            if isinstance(found, Decision):
                return found
            template = self._templates.put(key, found)
        plan = template.plan_for(now, [m.quantity for m in meters])
        generation = self._refunds.get(plan.customer_id, self._refund_base)
        remembered = template.denial
        if remembered is not None and not force and request.idempotency_key is None:
            local = remembered.answer(plan, decision_id, generation)
            if local is not None:
                self.denied_locally += 1
                return local
        reply = await self._store.decide(
            plan,
            decision_id=decision_id,
            request_id=request.request_id,
            idempotency_key=request.idempotency_key,
            idempotency_scope=(
                "" if request.idempotency_key is None else idempotency_scope(request, meters)
            ),
            mode=MODE_FORCE if force else MODE_DECIDE,
        )
        decision = self._decision(template, plan, reply)
        if decision.allowed:
            template.denial = None  # a counter may have been refunded: ask Redis again
        elif (fresh := remember(plan, decision, generation)) is not None:
            template.denial = fresh
        return decision

    def _new_template(
        self,
        policy: Policy,
        customer: Customer,
        request: DecisionRequest,
        meters: list[MeterRequest],
        now: datetime,
        decision_id: str,
    ) -> PlanTemplate | Decision:
        """Plan the request's shape for its customer, or the decision that needs no counter."""
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
        return PlanTemplate(
            policy=policy,
            customer=customer,
            plan=self._plan(policy, customer, meters, request.requires, now),
            config_values=self._config_values(policy, customer),
        )

    async def usage(self, customer_id: str) -> tuple[LimitStatus, ...] | None:
        """Every counter of the customer now (quota, rate, spend), consuming nothing.

        None for an unknown customer. Raises StoreUnavailable.
        """
        policy = self._policy.current()
        customer = await self._policy.customer(customer_id)
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
        return tuple(limit_status(plan, row) for row in reply.rows)

    async def grant_balances(self, customer: Customer) -> tuple[GrantBalance, ...]:
        """Every grant of `customer` (as the caller looked it up) with what is left of it now,
        in the order they are drawn on (earliest expiry first). Raises StoreUnavailable."""
        customer_id = customer.id
        now = self._clock.now()
        grants = sorted(
            customer.grants, key=lambda g: (g.expires_at is None, g.expires_at or now, g.id)
        )
        used = await self._store.grants_used(customer_id, [g.id for g in grants])
        out = []
        for g, u in zip(grants, used, strict=True):
            expired = g.expires_at is not None and g.expires_at <= now
            left = 0 if expired else max(0, g.amount - u)
            out.append(GrantBalance(g.id, g.feature, g.amount, u, left, g.expires_at, expired))
        return tuple(out)

    async def settle(
        self,
        customer_id: str,
        reservation_id: str,
        actuals: Mapping[str, int],
        *,
        request_id: str = "",
    ) -> SettleResult:
        """Adjust reservation `reservation_id` (the decision id) to the actual quantities.

        Idempotent: a retried settlement of the same reservation changes nothing and gets
        the first one's answer (status, deltas, cost) again, whatever its actuals, as long as
        the reservation record would have lived (its TTL + 1 h); after that, UNKNOWN.
        A reservation past its TTL stands at its estimate (EXPIRED).
        """
        policy = self._policy.current()
        customer = await self._policy.customer(customer_id)
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
        if reply.cost_delta_nano < 0 or any(d < 0 for d in reply.deltas.values()):
            self._refunded(customer_id)
        return SettleResult(
            SettleStatus(reply.status), deltas=reply.deltas, cost_delta_nano=reply.cost_delta_nano
        )

    def keep_lost(self, decision_id: str) -> None:
        """Decision `decision_id` lost its reply and was answered 200 (fail-open): it is
        recorded with decide(force=True, decision_id=...) and must not be voided."""
        self._store.keep_lost(decision_id)

    def recorded(self, decision_id: str) -> None:
        """The kept decision `decision_id` is recorded (the offline backlog replayed it)."""
        self._store.recorded(decision_id)

    async def void_lost(self) -> int:
        """Void the decisions whose reply was lost and that were not kept (store.void_lost);
        how many had been applied. Raises StoreUnavailable."""
        customers = await self._store.void_lost()
        for customer_id in customers:
            self._refunded(customer_id)
        return len(customers)

    def _refunded(self, customer_id: str) -> None:
        """Counters of the customer went down: forget its remembered denials."""
        if len(self._refunds) >= MAX_REFUND_GENERATIONS and customer_id not in self._refunds:
            # start every customer over at a generation no remembered denial has
            self._refund_base += 1 << 32
            self._refunds.clear()
        self._refunds[customer_id] = self._refunds.get(customer_id, self._refund_base) + 1

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
    def _config_values(policy: Policy, customer: Customer) -> Mapping[str, str]:
        """Config features' values by the header that carries them upstream."""
        values = customer.entitlements.config_values
        if not values:
            return NO_STRINGS  # shared: one object less per template for the collector
        return frozen_map(
            {(policy.features[name].header or name): value for name, value in values.items()}
        )

    @staticmethod
    def _decision(template: PlanTemplate, plan: DecisionPlan, reply: DecideReply) -> Decision:
        customer = template.customer
        statuses = tuple(map(template.status, reply.rows))
        config_values = template.config_values
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
