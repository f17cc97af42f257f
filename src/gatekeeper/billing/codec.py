"""Rows <-> billing values, for both dialects (only instants, dates and booleans differ).

PostgreSQL takes Python datetimes, dates and bools as they are; SQLite holds instants as ISO text
in one fixed, sortable format (`2026-11-24T12:00:00.000000Z`), dates as `YYYY-MM-DD`, booleans
as 0/1. A `Conv` carries the three conversions of one dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from gatekeeper.billing.rating import Placement
from gatekeeper.billing.types import (
    BilledEvent,
    DayTotal,
    InvoiceLine,
    LedgerRow,
    LineKind,
    LineStatus,
    LoggedAlert,
    MonthSpend,
    StoredEvent,
)
from gatekeeper.events import UsageEvent, UsageKind

__all__ = [
    "ALERT_COLUMNS",
    "EVENT_COLUMNS",
    "LINE_COLUMNS",
    "PG_CONV",
    "SQLITE_CONV",
    "Conv",
    "alert_from_row",
    "day_total_from_row",
    "event_row",
    "ledger_from_row",
    "line_from_row",
    "month_spend_from_row",
    "stored_from_row",
]

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

EVENT_COLUMNS = (
    "id", "stream_id", "kind", "customer", "plan", "feature", "unit", "quantity", "granted",
    "billable", "amount_nano", "currency", "decision_id", "request_id", "idempotency_key",
    "occurred_at", "overage", "estimate", "actual", "period_start", "invoice_period_start",
    "line_kind",
)  # fmt: skip

LINE_COLUMNS = (
    "id", "customer", "feature", "unit", "period_start", "period_end", "kind", "currency",
    "event_count", "quantity", "granted", "billable_quantity", "amount_nano", "amount_minor",
    "status", "closed_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Conv:
    ts: Callable[[datetime], Any]
    day: Callable[[date], Any]
    flag: Callable[[bool], Any]
    parse_ts: Callable[[Any], datetime]
    parse_day: Callable[[Any], date]


def _sqlite_ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime(_TS_FORMAT)


def _sqlite_parse_ts(text: Any) -> datetime:
    return datetime.strptime(str(text), _TS_FORMAT).replace(tzinfo=UTC)


def _pg_parse_ts(value: Any) -> datetime:
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


SQLITE_CONV = Conv(
    ts=_sqlite_ts,
    day=date.isoformat,
    flag=int,
    parse_ts=_sqlite_parse_ts,
    parse_day=lambda v: date.fromisoformat(str(v)),
)
PG_CONV = Conv(ts=lambda t: t, day=lambda d: d, flag=bool, parse_ts=_pg_parse_ts,
               parse_day=lambda v: v)  # fmt: skip


def event_row(b: BilledEvent, where: Placement, c: Conv) -> tuple[Any, ...]:
    """Values in EVENT_COLUMNS order."""
    e = b.event
    return (
        e.id, b.stream_id, e.kind.value, e.customer, e.plan, e.feature, e.unit, e.quantity,
        e.granted, e.billable, e.amount_nano, e.currency, e.decision_id, e.request_id,
        e.idempotency_key, c.ts(e.time), c.flag(e.overage), e.estimate, e.actual,
        c.day(b.period_start.date()), c.day(where.start.date()), where.kind.value,
    )  # fmt: skip


def stored_from_row(r: Sequence[Any], c: Conv) -> StoredEvent:
    """A row selected as EVENT_COLUMNS back into a StoredEvent."""
    event = UsageEvent(
        id=r[0], kind=UsageKind(r[2]), customer=r[3], plan=r[4], feature=r[5], unit=r[6],
        quantity=r[7], granted=r[8], billable=r[9], amount_nano=r[10], currency=r[11],
        decision_id=r[12], request_id=r[13], idempotency_key=r[14], time=c.parse_ts(r[15]),
        overage=bool(r[16]), estimate=r[17], actual=r[18],
    )  # fmt: skip
    return StoredEvent(
        event=event,
        period_start=c.parse_day(r[19]),
        invoice_period_start=c.parse_day(r[20]),
        line_kind=LineKind(r[21]),
        stream_id=r[1],
    )


def line_from_row(r: Sequence[Any], c: Conv) -> InvoiceLine:
    """A row selected as LINE_COLUMNS."""
    return InvoiceLine(
        id=int(r[0]), customer=r[1], feature=r[2], unit=r[3], period_start=c.parse_day(r[4]),
        period_end=c.parse_day(r[5]), kind=LineKind(r[6]), currency=r[7], event_count=r[8],
        quantity=r[9], granted=r[10], billable_quantity=r[11], amount_nano=r[12],
        amount_minor=r[13], status=LineStatus(r[14]),
        closed_at=None if r[15] is None else c.parse_ts(r[15]),
    )  # fmt: skip


def day_total_from_row(r: Sequence[Any], c: Conv) -> DayTotal:
    """A row selected as day, currency, event_count, amount_nano."""
    return DayTotal(c.parse_day(r[0]), r[1], int(r[2]), int(r[3]))


def month_spend_from_row(r: Sequence[Any], c: Conv) -> MonthSpend:
    """A row selected as month, customer, currency, event_count, amount_nano."""
    return MonthSpend(c.parse_day(r[0]), r[1], r[2], int(r[3]), int(r[4]))


def ledger_from_row(r: Sequence[Any], c: Conv) -> LedgerRow:
    """A row selected as customer, feature, day, currency, event_count, quantity, amount_nano."""
    return LedgerRow(r[0], r[1], c.parse_day(r[2]), r[3], r[4], r[5], r[6])


ALERT_COLUMNS = (
    "id", "kind", "customer", "feature", "threshold", "used", '"limit"', "period_start",
    "period_end", "occurred_at", "decision_id", "delivered_at", "cause", "at_value",
)  # fmt: skip


def alert_from_row(r: Sequence[Any], c: Conv) -> LoggedAlert:
    """A row selected as ALERT_COLUMNS."""
    return LoggedAlert(
        id=r[0], kind=r[1], customer=r[2], feature=r[3], threshold=int(r[4]), used=int(r[5]),
        limit=int(r[6]), period_start=c.parse_ts(r[7]), period_end=c.parse_ts(r[8]),
        occurred_at=c.parse_ts(r[9]), decision_id=r[10],
        delivered_at=None if r[11] is None else c.parse_ts(r[11]), cause=r[12] or None,
        at=None if r[13] is None else int(r[13]),
    )  # fmt: skip
