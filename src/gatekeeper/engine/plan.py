"""Turn (customer, request, now) into the counters one decision must check: pure, no I/O.

The plan is what the store executes atomically. It carries limits, windows and prices, never
key names: those are the store's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from gatekeeper.model import (
    CapAction,
    Customer,
    Feature,
    FeatureType,
    Grant,
    MeteredEntitlement,
    PriceTier,
    RateLimit,
)
from gatekeeper.periods import Window, billing_window, window_for

__all__ = [
    "DecisionPlan",
    "GrantPlan",
    "MeterPlan",
    "PlanMemo",
    "QuotaPlan",
    "RatePlan",
    "SpendPlan",
    "build_meter",
    "build_spend",
]


@dataclass(frozen=True, slots=True)
class GrantPlan:
    grant_id: str
    amount: int
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class QuotaPlan:
    limit: int | None  # None = unlimited (counted only)
    ceiling: int | None  # deny when used would pass this (None = never)
    thresholds: tuple[int, ...]  # percentages, then absolute points negated (alert_points)
    window: Window


@dataclass(frozen=True, slots=True)
class RatePlan:
    unit: str  # second | minute | hour (part of the key)
    limit: int  # per window; also the burst
    window_s: int


@dataclass(frozen=True, slots=True)
class MeterPlan:
    feature: str
    unit: str
    quantity: int
    emit: bool  # metered: append a usage event; access-only rate limiting: no event
    reserve: bool
    grants: tuple[GrantPlan, ...] = ()
    quota: QuotaPlan | None = None
    rates: tuple[RatePlan, ...] = ()
    tiers: tuple[PriceTier, ...] = ()  # empty = not priced
    billing: Window | None = None  # for graduated tiers (units billed so far this period)


@dataclass(frozen=True, slots=True)
class SpendPlan:
    cap: int | None  # nano-units; None = tracked, not capped
    block: bool
    thresholds: tuple[int, ...]  # as QuotaPlan.thresholds (absolute: nano-units)
    window: Window


class PlanMemo:
    """Scratch space shared by the plans of one template (engine/templates.py): the same
    counters and windows, only `now` and meter quantities differ. The store keeps what it
    derives from the counters here (its encoded KEYS/ARGV) instead of deriving it per call.
    """

    __slots__ = ("owner", "value")

    def __init__(self) -> None:
        self.owner: object = None
        self.value: object = None


@dataclass(frozen=True, slots=True)
class DecisionPlan:
    customer_id: str
    plan: str
    now: datetime
    meters: tuple[MeterPlan, ...]
    spend: SpendPlan | None
    currency: str
    memo: PlanMemo | None = field(default=None, compare=False, repr=False)


def _active_grants(grants: Iterable[Grant], feature: str, now: datetime) -> tuple[GrantPlan, ...]:
    """Unexpired grants of a feature, earliest expiry first (those are used up first)."""
    live = [
        g for g in grants if g.feature == feature and (g.expires_at is None or g.expires_at > now)
    ]
    live.sort(key=lambda g: (g.expires_at is None, g.expires_at or now, g.id))
    return tuple(GrantPlan(g.id, g.amount, g.expires_at) for g in live)


def _quota(ent: MeteredEntitlement, customer: Customer, now: datetime) -> QuotaPlan:
    window = window_for(now, ent.period, ent.anchor, customer.billing_day)
    return QuotaPlan(
        limit=ent.limit,
        ceiling=ent.ceiling,
        thresholds=alert_points(ent.alert_thresholds if ent.limit else (), ent.alert_at),
        window=window,
    )


def _rates(limits: Iterable[RateLimit], feature: str) -> tuple[RatePlan, ...]:
    return tuple(
        RatePlan(unit=r.per.value, limit=r.limit, window_s=r.per.seconds)
        for r in limits
        if r.feature == feature
    )


def build_meter(
    *,
    customer: Customer,
    feature: Feature,
    quantity: int,
    reserve: bool,
    tiers: tuple[PriceTier, ...],
    now: datetime,
) -> MeterPlan:
    """The counters `quantity` units of `feature` touch for this customer at `now`.

    A metered feature gets its grants, quota, rate limits and price; a boolean or config
    feature only its rate limits (one unit per request, no usage event).
    """
    plan = customer.entitlements
    rates = _rates(plan.rate_limits, feature.name)
    if feature.type is not FeatureType.METERED:
        return MeterPlan(
            feature=feature.name,
            unit="request",
            quantity=quantity,
            emit=False,
            reserve=False,
            rates=rates,
        )
    ent = plan.metered.get(feature.name)
    graduated = len(tiers) > 1
    return MeterPlan(
        feature=feature.name,
        unit=feature.unit or "unit",
        quantity=quantity,
        emit=True,
        reserve=reserve,
        grants=_active_grants(customer.grants, feature.name, now),
        quota=_quota(ent, customer, now) if ent is not None else None,
        rates=rates,
        tiers=tiers,
        billing=billing_window(now, customer.billing_day) if graduated else None,
    )


def build_spend(customer: Customer, now: datetime) -> SpendPlan:
    """The customer's spend counter for the billing period, capped when a cap applies."""
    cap = customer.effective_spend_cap
    window = billing_window(now, customer.billing_day)
    if cap is None:
        return SpendPlan(cap=None, block=False, thresholds=(), window=window)
    if cap.amount_nano is None:  # no cap in force: amounts to alert at still apply
        return SpendPlan(cap=None, block=False, thresholds=alert_points((), cap.alert_at),
                         window=window)  # fmt: skip
    return SpendPlan(
        cap=cap.amount_nano,
        block=cap.action is CapAction.BLOCK,
        thresholds=alert_points(cap.alert_thresholds, cap.alert_at),
        window=window,
    )


def alert_points(percents: tuple[int, ...], absolute: tuple[int, ...]) -> tuple[int, ...]:
    """The one list decide.lua reads: percentages of the limit (ascending), then each absolute
    point negated (units, or nano-units of spend), so both kinds share the ARGV layout."""
    return percents + tuple(-a for a in absolute)
