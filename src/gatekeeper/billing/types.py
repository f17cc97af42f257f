"""Values crossing the billing store boundary: events with their billing period, lines, ledger.

Money is integer nano-units (1e-9 of the major unit) except `amount_minor` (the currency's
minor unit, rounded half-even once per invoice line). Times are aware UTC datetimes; period
starts and ends are UTC midnights.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from gatekeeper.events import UsageEvent

__all__ = [
    "BilledEvent",
    "InvoiceLine",
    "LedgerRow",
    "LineKind",
    "LineStatus",
    "StoredEvent",
    "UsageSums",
]


class LineKind(StrEnum):
    USAGE = "usage"  # events whose own billing period is this one
    LATE = "late"  # events of an already closed period, billed in the next open one


class LineStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # frozen by close_period: never changes again


@dataclass(frozen=True, slots=True)
class BilledEvent:
    """A usage event with the billing period its time falls in (from the customer's billing day).

    `billing_day` (1..31, None = calendar month) lets the store find the next period when this
    one is already closed. `stream_id` is the Redis entry id, kept for the audit trail.
    """

    event: UsageEvent
    period_start: datetime
    period_end: datetime
    billing_day: int | None
    stream_id: str = ""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store holds it, with the invoice line it was billed on."""

    event: UsageEvent
    period_start: date  # the billing period of the event's time
    invoice_period_start: date  # the period it is invoiced in (later when its own was closed)
    line_kind: LineKind
    stream_id: str


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One customer x feature x billing period x kind x currency: sums of its events."""

    id: int
    customer: str
    feature: str
    unit: str
    period_start: date
    period_end: date
    kind: LineKind
    currency: str
    event_count: int
    quantity: int
    granted: int
    billable_quantity: int
    amount_nano: int
    amount_minor: int  # round_to_minor(amount_nano, currency), half-even, once
    status: LineStatus
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """Usage revenue recognised for one customer, feature and UTC day (as consumed)."""

    customer: str
    feature: str
    day: date
    currency: str
    event_count: int
    quantity: int
    amount_nano: int


@dataclass(frozen=True, slots=True)
class DayTotal:
    """Usage revenue recognised on one UTC day over every customer, in one currency.

    Pre-aggregated by `record` in the same transaction as the events, so an operator's
    "revenue today" is one row read, whatever the number of customers."""

    day: date
    currency: str
    event_count: int
    amount_nano: int


@dataclass(frozen=True, slots=True)
class MonthSpend:
    """What one customer spent in one calendar month (UTC), in one currency (pre-aggregated
    like `DayTotal`; the month is its first day)."""

    month: date
    customer: str
    currency: str
    event_count: int
    amount_nano: int


@dataclass(frozen=True, slots=True)
class UsageSums:
    """Sums of a customer's stored events for one feature over a time range."""

    feature: str
    event_count: int = 0
    quantity: int = 0
    billable: int = 0
    amount_nano: int = 0


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A page of one customer's stored events, oldest first (keyset pagination)."""

    customer: str
    feature: str | None = None
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until
    after: tuple[datetime, str] | None = None  # (occurred_at, id) of the previous page's last
    limit: int = 100


@dataclass(frozen=True, slots=True)
class LoggedAlert:
    """An alert as the notifier logged it (`delivered_at` None = not delivered yet)."""

    id: str
    kind: str
    customer: str
    feature: str | None
    threshold: int
    used: int
    limit: int
    period_start: datetime
    period_end: datetime
    occurred_at: datetime
    decision_id: str
    delivered_at: datetime | None
    cause: str | None = None  # blocked, resumed: quota_exhausted, spend_cap or rate_limited
    at: int | None = None  # threshold: the absolute point crossed (units, nano-units)
