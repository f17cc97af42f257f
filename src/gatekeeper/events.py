"""Usage and alert events as the decision scripts append them to the partition streams.

The stream entry is the wire format (flat string fields, written by lua/decide.lua and
lua/settle.lua); these frozen types are what the rest of gatekeeper reads. `id` is globally
unique and stable across redeliveries: the billing store's idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gatekeeper.clock import from_us

__all__ = ["BLOCK_CAUSES", "AlertEvent", "AlertKind", "BlockCause", "UsageEvent", "UsageKind"]


def _text(fields: Mapping[bytes | str, bytes | str], name: str, default: str | None = None) -> str:
    value = fields.get(name)
    if value is None:
        value = fields.get(name.encode())
    if value is None:
        if default is None:
            raise ValueError(f"stream entry lacks field {name!r}")
        return default
    return value.decode() if isinstance(value, bytes) else value


class UsageKind(StrEnum):
    USAGE = "usage"  # units consumed by an admitted decision
    RESERVATION = "reservation"  # an estimate admitted now; stands unless adjusted
    ADJUSTMENT = "adjustment"  # settlement: actual - estimate (may be negative)


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One metered feature of one admitted decision (or its settlement adjustment).

    quantity = granted + billable (all signed for adjustments); amount_nano prices the billable
    units in nano-units of `currency` at the graduated tier they fell in.
    """

    id: str
    kind: UsageKind
    customer: str
    plan: str
    feature: str
    unit: str
    quantity: int
    granted: int
    billable: int
    amount_nano: int
    currency: str
    decision_id: str
    request_id: str
    idempotency_key: str
    time: datetime
    overage: bool = False
    estimate: int | None = None  # adjustments only
    actual: int | None = None  # adjustments only
    # the decision span's W3C context, when the deciding process traced it (else ""): the
    # worker's spans link to it; nothing stores or forwards it
    traceparent: str = ""

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> UsageEvent:
        """Parse a usage stream entry. Raises ValueError naming a missing or bad field."""
        estimate = _text(fields, "estimate", "")
        actual = _text(fields, "actual", "")
        try:
            return cls(
                id=_text(fields, "id"),
                kind=UsageKind(_text(fields, "type")),
                customer=_text(fields, "customer"),
                plan=_text(fields, "plan", ""),
                feature=_text(fields, "feature"),
                unit=_text(fields, "unit", ""),
                quantity=int(_text(fields, "quantity")),
                granted=int(_text(fields, "granted", "0")),
                billable=int(_text(fields, "billable")),
                amount_nano=int(_text(fields, "amount_nano")),
                currency=_text(fields, "currency"),
                decision_id=_text(fields, "decision_id"),
                request_id=_text(fields, "request_id", ""),
                idempotency_key=_text(fields, "idempotency_key", ""),
                time=from_us(int(_text(fields, "time_us"))),
                overage=_text(fields, "overage", "0") == "1",
                estimate=int(estimate) if estimate else None,
                actual=int(actual) if actual else None,
                traceparent=_text(fields, "traceparent", ""),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad usage stream entry: {exc}") from exc


class AlertKind(StrEnum):
    THRESHOLD = "threshold"  # a percentage of a quota (feature) or spend cap (feature "") reached
    OVERAGE = "overage"  # a soft limit passed
    SPEND_CAP = "spend_cap"  # spend past a cap whose action is "alert"
    FORECAST = "forecast"  # the period is projected to end above a limit or cap
    ANOMALY = "anomaly"  # today's pace far above the recent daily baseline
    BLOCKED = "blocked"  # the first request refused by a quota or a spend cap (once per episode)
    RESUMED = "resumed"  # that block ended: the limit or cap changed, a grant paid, or it reset


class BlockCause(StrEnum):
    """What a `blocked` (and its `resumed`) alert is about (decide.lua writes these)."""

    QUOTA_EXHAUSTED = "quota_exhausted"  # a hard quota used up: until the window resets
    SPEND_CAP = "spend_cap"  # a blocking spend cap reached: until the billing period ends
    RATE_LIMITED = "rate_limited"  # a rate limit refusing the customer for a sustained span


BLOCK_CAUSES = tuple(c.value for c in BlockCause)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    id: str
    kind: AlertKind
    customer: str
    plan: str
    feature: str | None  # None = the spend cap
    threshold: int  # percent
    used: int  # units, or nano-units for the spend cap
    limit: int
    period_start: datetime
    period_end: datetime
    time: datetime
    decision_id: str
    traceparent: str = ""  # as UsageEvent.traceparent
    # blocked, resumed: what refuses the customer (quota_exhausted, spend_cap, rate_limited)
    cause: str = ""
    # threshold: the absolute point crossed (alert_at: units, or nano-units of spend); None for
    # a percentage of the limit (then `threshold` is that percentage; 0 with `at`)
    at: int | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> AlertEvent:
        """Parse an alert stream entry. Raises ValueError naming a missing or bad field."""
        try:
            feature = _text(fields, "feature", "")
            return cls(
                id=_text(fields, "id"),
                kind=AlertKind(_text(fields, "kind")),
                customer=_text(fields, "customer"),
                plan=_text(fields, "plan", ""),
                feature=feature or None,
                threshold=int(_text(fields, "threshold")),
                used=int(_text(fields, "used")),
                limit=int(_text(fields, "limit")),
                period_start=from_us(int(_text(fields, "period_start_us"))),
                period_end=from_us(int(_text(fields, "period_end_us"))),
                time=from_us(int(_text(fields, "time_us"))),
                decision_id=_text(fields, "decision_id"),
                traceparent=_text(fields, "traceparent", ""),
                cause=_text(fields, "cause", ""),
                at=int(at) if (at := _text(fields, "at", "")) else None,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad alert stream entry: {exc}") from exc
