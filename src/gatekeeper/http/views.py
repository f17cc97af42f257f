"""JSON views of the domain for the HTTP API and the dashboard: money as decimal strings,
instants as ISO 8601 UTC, counts as integers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gatekeeper.billing.types import (
    DayTotal,
    InvoiceLine,
    LedgerRow,
    LoggedAlert,
    MonthSpend,
    StoredEvent,
)
from gatekeeper.engine.types import GrantBalance, LimitKind, LimitStatus
from gatekeeper.forecast import Forecast, Outlook
from gatekeeper.model import (
    Customer,
    Feature,
    Grant,
    MeteredEntitlement,
    Plan,
    Policy,
    Price,
    RateUnit,
    SpendCap,
)
from gatekeeper.money import format_nano
from gatekeeper.stats.blocked import BlockedEpisode
from gatekeeper.store.customers import CustomerRecord

__all__ = [
    "alert_view",
    "customer_view",
    "event_view",
    "feature_view",
    "forecast_view",
    "invoice_line_view",
    "ledger_view",
    "plan_view",
    "price_view",
    "spend_cap_view",
    "usage_view",
]

Json = dict[str, Any]


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat().replace("+00:00", "Z")


def feature_view(feature: Feature) -> Json:
    return {
        "name": feature.name,
        "type": feature.type.value,
        "unit": feature.unit,
        "description": feature.description,
        "header": feature.header,
    }


def price_view(price: Price) -> Json:
    return {
        "feature": price.feature,
        "currency": price.currency,
        "per": price.per,
        "tiers": [{"up_to": t.up_to, "unit_price": t.unit_price} for t in price.tiers],
    }


def _metered_view(m: MeteredEntitlement) -> Json:
    return {
        "feature": m.feature,
        "limit": m.limit,
        "period": m.period.value,
        "anchor": m.anchor.value,
        "enforcement": m.enforcement.value,
        "overage_allowance": m.overage_allowance,
        "grace_percent": m.grace_percent,
        "alert_thresholds": list(m.alert_thresholds),
    }


def spend_cap_view(cap: SpendCap | None) -> Json | None:
    if cap is None:
        return None
    return {
        "amount": None if cap.amount_nano is None else format_nano(cap.amount_nano),
        "max_customer_cap": None
        if cap.max_customer_cap_nano is None
        else format_nano(cap.max_customer_cap_nano),
        "action": cap.action.value,
        "alert_thresholds": list(cap.alert_thresholds),
    }


def plan_view(plan: Plan, *, source: str = "file") -> Json:
    return {
        "name": plan.name,
        "source": source,
        "access": sorted(plan.access),
        "config": dict(plan.config_values),
        "metered": [_metered_view(m) for m in plan.metered.values()],
        "rate_limits": [
            {"feature": r.feature, "limit": r.limit, "per": r.per.value} for r in plan.rate_limits
        ],
        "spend_cap": spend_cap_view(plan.spend_cap),
    }


def _grant_view(grant: Grant) -> Json:
    return {
        "id": grant.id,
        "feature": grant.feature,
        "amount": grant.amount,
        "expires_at": _iso(grant.expires_at),
    }


def _epoch_iso(seconds: int | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def customer_list_view(record: CustomerRecord) -> Json:
    """One line of the customer list, read from the stored record (no compilation)."""
    doc = record.doc
    keys = doc.get("api_keys") or []
    day = doc.get("billing_day")
    return {
        "id": record.id,
        "plan": record.plan,
        "source": record.source.value,
        "billing_day": day if isinstance(day, int) and not isinstance(day, bool) else None,
        "api_keys": sum(1 for k in keys if isinstance(k, dict) and not k.get("revoked")),
    }


def customer_view(
    customer: Customer, *, source: str = "file", last_used: Mapping[str, int] | None = None
) -> Json:
    """`last_used`: key id -> when the key last identified a caller (epoch seconds)."""
    used = last_used or {}
    own = customer.spend_cap
    return {
        "id": customer.id,
        "plan": customer.plan,
        "source": source,
        "billing_day": customer.billing_day,
        "entitlements": plan_view(customer.entitlements, source=source),
        "grants": [_grant_view(g) for g in customer.grants],
        "spend_cap": {
            "own": None
            if own is None
            else {
                "amount": format_nano(own.amount_nano),
                "action": None if own.action is None else own.action.value,
            },
            "effective": spend_cap_view(customer.effective_spend_cap),
        },
        "api_keys": [
            {
                "id": k.id,
                "label": k.label,
                "revoked": k.revoked,
                "created_at": _iso(k.created_at),
                "expires_at": _iso(k.expires_at),
                "last_used_at": _epoch_iso(used.get(k.id)),
            }
            for k in customer.api_keys
        ],
        "metadata": dict(customer.metadata),
    }


_RATE_UNITS = {u.seconds: u.value for u in RateUnit}


def usage_view(
    policy: Policy,
    customer: Customer,
    limits: Sequence[LimitStatus],
    now: datetime,
    grants: Sequence[GrantBalance] = (),
    denials: Mapping[str, int] | None = None,
) -> Json:
    """Used, limit, remaining and reset of every counter; each grant's balance (units drawn
    from a grant are not in its feature's `used`: they come before the plan's limit); spend in
    money (decimal strings); `denials`: today's denials by reason (UTC day)."""
    ents = customer.entitlements
    features: list[Json] = []
    spend: Json | None = None
    for status in limits:
        if status.kind is LimitKind.SPEND:
            cap = customer.effective_spend_cap
            spend = {
                "spent": format_nano(status.used),
                "cap": None
                if cap is None or cap.amount_nano is None
                else format_nano(status.limit),
                "remaining": format_nano(max(status.remaining, 0)),
                "reset": _iso(status.reset_at),
                "currency": policy.currency,
                "action": None if cap is None else cap.action.value,
            }
            continue
        feature = status.feature or ""
        metered = ents.metered.get(feature)
        unit = policy.features[feature].unit if feature in policy.features else None
        unlimited = status.kind is LimitKind.QUOTA and metered is not None and metered.limit is None
        features.append(
            {
                "feature": feature,
                "unit": unit,
                "kind": status.kind.value,
                "used": status.used,
                "limit": None if unlimited else status.limit,
                "remaining": None if unlimited else max(status.remaining, 0),
                "reset": _iso(status.reset_at),
                "window_s": status.window_s,
                # a quota's period; a rate limit's unit (per second, minute, hour)
                "period": _RATE_UNITS.get(status.window_s) if status.kind is LimitKind.RATE
                else None if metered is None or status.kind is not LimitKind.QUOTA
                else metered.period.value,
                "enforcement": None if metered is None else metered.enforcement.value,
            }
        )  # fmt: skip
    return {
        "customer": customer.id,
        "plan": customer.plan,
        "currency": policy.currency,
        "at": _iso(now),
        "features": features,
        "grants": [
            {
                "id": g.id,
                "feature": g.feature,
                "amount": g.amount,
                "used": g.used,
                "remaining": g.remaining,
                "expires_at": _iso(g.expires_at),
                "expired": g.expired,
            }
            for g in grants
        ],
        "spend": spend,
        "denials_today": {
            "date": now.astimezone(UTC).date().isoformat(),
            "total": sum((denials or {}).values()),
            "by_reason": dict(denials or {}),
        },
    }


def forecast_view(
    feature: str | None,
    used: int,
    limit: int | None,
    forecast: Forecast,
    period_end: datetime,
    *,
    outlook: Outlook,
    enforcement: str | None,
) -> Json:
    """One projection; money (feature None) as decimal strings. `enforcement`: what happens
    at the limit — `block` (refused), `overage` (admitted, billed as overage), `alert` (a cap
    that only alerts), None without a limit; `outlook` says what the projection means under it
    ("blocked around <date>", not "over by …", when the customer will be cut off)."""

    def amount(value: int | None) -> object:
        if value is None or feature is not None:
            return value
        return format_nano(value)

    return {
        "feature": feature,
        "used": amount(used),
        "limit": amount(limit),
        "projected": amount(forecast.projected),
        "low": amount(forecast.low),
        "high": amount(forecast.high),
        "rate_per_day": forecast.rate_per_day
        if feature is not None
        else format_nano(round(forecast.rate_per_day)),
        "period_end": _iso(period_end),
        "exceeds_limit": limit is not None and forecast.projected > limit,
        "enforcement": enforcement,
        "outlook": outlook.verdict,
        "limit_reached_at": _iso(outlook.reached_at),
        "method": forecast.method,
    }


def alert_view(alert: LoggedAlert) -> Json:
    money = alert.feature is None
    return {
        "id": alert.id,
        "kind": alert.kind,
        "customer": alert.customer,
        "feature": alert.feature,
        "threshold": alert.threshold,
        "used": format_nano(alert.used) if money else alert.used,
        "limit": format_nano(alert.limit) if money else alert.limit,
        "period_start": _iso(alert.period_start),
        "period_end": _iso(alert.period_end),
        "at": _iso(alert.occurred_at),
        "delivered_at": _iso(alert.delivered_at),
        "cause": alert.cause,
        # a threshold at an absolute point (alert_at): units, or money like `used`
        "alert_at": None if alert.at is None else (format_nano(alert.at) if money else alert.at),
    }


def event_view(stored: StoredEvent) -> Json:
    e = stored.event
    return {
        "id": e.id,
        "kind": e.kind.value,
        "customer": e.customer,
        "plan": e.plan,
        "feature": e.feature,
        "unit": e.unit,
        "quantity": e.quantity,
        "granted": e.granted,
        "billable": e.billable,
        "amount": format_nano(e.amount_nano),
        "currency": e.currency,
        "time": _iso(e.time),
        "overage": e.overage,
        "decision_id": e.decision_id,
        "request_id": e.request_id,
        "idempotency_key": e.idempotency_key or None,
        "invoice_period_start": stored.invoice_period_start.isoformat(),
    }


def invoice_line_view(line: InvoiceLine) -> Json:
    return {
        "feature": line.feature,
        "unit": line.unit,
        "kind": line.kind.value,
        "period_start": line.period_start.isoformat(),
        "period_end": line.period_end.isoformat(),
        "currency": line.currency,
        "events": line.event_count,
        "quantity": line.quantity,
        "granted": line.granted,
        "billable_quantity": line.billable_quantity,
        "amount": format_nano(line.amount_nano),
        "amount_minor": line.amount_minor,
        "status": line.status.value,
    }


def ledger_view(row: LedgerRow) -> Json:
    return {
        "day": row.day.isoformat(),
        "feature": row.feature,
        "currency": row.currency,
        "events": row.event_count,
        "quantity": row.quantity,
        "amount": format_nano(row.amount_nano),
    }


def day_total_view(row: DayTotal) -> Json:
    return {
        "day": row.day.isoformat(),
        "currency": row.currency,
        "events": row.event_count,
        "amount": format_nano(row.amount_nano),
    }


def spender_view(row: MonthSpend) -> Json:
    return {
        "customer": row.customer,
        "currency": row.currency,
        "events": row.event_count,
        "amount": format_nano(row.amount_nano),
    }


def blocked_view(e: BlockedEpisode, currency: str) -> Json:
    """One open block episode; a spend cap's limit is money (`limit_amount`), a quota's units."""
    money = e.feature == ""
    return {
        "customer": e.customer,
        "plan": e.plan,
        "feature": e.feature or None,
        "cause": e.cause,
        "limit": None if money else e.limit,
        "limit_amount": format_nano(e.limit) if money else None,
        "currency": currency if money else None,
        "period_start": _iso(e.period_start),
        "until": _iso(e.until),
    }
