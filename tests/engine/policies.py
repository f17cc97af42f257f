"""Small policies built directly from the model, for engine tests (no YAML involved)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from gatekeeper.model import (
    Anchor,
    CapAction,
    Customer,
    CustomerSpendCap,
    Enforcement,
    Feature,
    FeatureType,
    Grant,
    MeteredEntitlement,
    Period,
    Plan,
    Policy,
    Price,
    PriceTier,
    RateLimit,
    RateUnit,
    SpendCap,
    frozen_map,
)

FEATURES = {
    "api_access": Feature("api_access", FeatureType.BOOLEAN),
    "requests": Feature("requests", FeatureType.METERED, unit="request"),
    "tokens": Feature("tokens", FeatureType.METERED, unit="token"),
    "images": Feature("images", FeatureType.METERED, unit="image"),
    "tier": Feature("tier", FeatureType.CONFIG, header="x-model-tier"),
}


def flat(feature: str, nano: int) -> Price:
    return Price(feature, "USD", 1, (PriceTier(None, nano, str(nano)),))


def tiered(feature: str, *tiers: tuple[int | None, int]) -> Price:
    return Price(feature, "USD", 1, tuple(PriceTier(u, p, str(p)) for u, p in tiers))


def metered(
    feature: str,
    limit: int | None,
    *,
    period: Period = Period.DAY,
    enforcement: Enforcement = Enforcement.HARD,
    overage_allowance: int | None = None,
    thresholds: tuple[int, ...] = (),
    anchor: Anchor = Anchor.CALENDAR,
    grace_percent: int = 0,
) -> MeteredEntitlement:
    return MeteredEntitlement(
        feature, limit, period, anchor, enforcement, overage_allowance, thresholds, grace_percent
    )


def plan(
    name: str = "p",
    *ents: MeteredEntitlement,
    access: tuple[str, ...] = ("api_access",),
    rates: tuple[RateLimit, ...] = (),
    spend_cap: SpendCap | None = None,
    config: dict[str, str] | None = None,
) -> Plan:
    return Plan(
        name=name,
        access=frozenset(access),
        config_values=frozen_map(config or {}),
        metered=frozen_map({e.feature: e for e in ents}),
        rate_limits=rates,
        spend_cap=spend_cap,
    )


def policy(
    p: Plan,
    *,
    customer: str = "cust",
    prices: tuple[Price, ...] = (),
    grants: tuple[Grant, ...] = (),
    billing_day: int | None = None,
    own_cap: CustomerSpendCap | None = None,
    extra_plans: tuple[Plan, ...] = (),
) -> Policy:
    c = Customer(
        id=customer,
        plan=p.name,
        entitlements=p,
        billing_day=billing_day,
        grants=grants,
        spend_cap=own_cap,
    )
    return Policy(
        version=1,
        currency="USD",
        features=frozen_map(FEATURES),
        prices=frozen_map({pr.feature: pr for pr in prices}),
        plans=frozen_map({p.name: p, **{x.name: x for x in extra_plans}}),
        customers=frozen_map({customer: c}),
    )


def rate(feature: str, limit: int, per: RateUnit = RateUnit.SECOND) -> RateLimit:
    return RateLimit(feature, limit, per)


def cap(
    amount_nano: int, action: CapAction = CapAction.BLOCK, thresholds: tuple[int, ...] = ()
) -> SpendCap:
    return SpendCap(amount_nano, None, action, thresholds)


def grant(gid: str, feature: str, amount: int, expires_at: datetime | None = None) -> Grant:
    return Grant(gid, feature, amount, expires_at)


def with_cap(pol: Policy, customer: str, own: CustomerSpendCap | None) -> Policy:
    """`pol` with the customer's own spend cap set (as the directory would hold it)."""
    customers = dict(pol.customers)
    customers[customer] = dataclasses.replace(customers[customer], spend_cap=own)
    return dataclasses.replace(pol, customers=frozen_map(customers))
