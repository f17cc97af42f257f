"""Pure billing arithmetic shared by every store: which line an event lands on, and the sums.

Rating: an event's `amount_nano` is authoritative. The decision script priced its billable units
at the graduated tier they fell in, atomically with the counters; re-rating here could only
disagree. Lines and the revenue ledger are therefore plain sums of events, and the one rounding
step (nano-units -> minor units, half-even) happens on the line total (`money.round_to_minor`).

Late events: when an event's own billing period is already closed for its customer, it is
billed on a `late` line of the next period that is still open (never dropped, never rewriting
a closed line). The event row keeps both its own period and the period it was invoiced in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from gatekeeper.billing.types import BilledEvent, DayTotal, LineKind, MonthSpend
from gatekeeper.periods import billing_window

__all__ = [
    "LedgerDelta",
    "LineDelta",
    "Placement",
    "aggregate",
    "dedupe",
    "operator_totals",
    "place",
]


@dataclass(frozen=True, slots=True)
class Placement:
    """The invoice period (and line kind) an event is billed in."""

    start: datetime
    end: datetime
    kind: LineKind


@dataclass(slots=True)
class LineDelta:
    """What a batch of newly stored events adds to one invoice line."""

    customer: str
    feature: str
    period_start: date
    kind: LineKind
    currency: str
    unit: str
    period_end: date
    event_count: int = 0
    quantity: int = 0
    granted: int = 0
    billable: int = 0
    amount_nano: int = 0

    @property
    def key(self) -> tuple[str, str, date, str, str]:
        return (self.customer, self.feature, self.period_start, self.kind.value, self.currency)


@dataclass(slots=True)
class LedgerDelta:
    """What a batch adds to the revenue recognised for one customer, feature and UTC day."""

    customer: str
    feature: str
    day: date
    currency: str
    event_count: int = 0
    quantity: int = 0
    amount_nano: int = 0

    @property
    def key(self) -> tuple[str, str, date, str]:
        return (self.customer, self.feature, self.day, self.currency)


def dedupe(events: Iterable[BilledEvent]) -> list[BilledEvent]:
    """First occurrence of each event id, in id order (a stable lock order for the stores)."""
    seen: dict[str, BilledEvent] = {}
    for e in events:
        seen.setdefault(e.event.id, e)
    return [seen[k] for k in sorted(seen)]


def place(billed: BilledEvent, closed: Collection[tuple[str, date]]) -> Placement:
    """The period `billed` is invoiced in: its own, or the next open one when that is closed.

    `closed` holds (customer, period_start date) of every closed period at or after the event's
    own period (closing is irreversible, so a stale superset is never wrong, only conservative).
    """
    customer = billed.event.customer
    start, end, kind = billed.period_start, billed.period_end, LineKind.USAGE
    while (customer, start.date()) in closed:
        window = billing_window(end, billed.billing_day)
        start, end, kind = window.start, window.end, LineKind.LATE
    return Placement(start, end, kind)


def aggregate(
    rows: Iterable[tuple[BilledEvent, Placement]],
) -> tuple[list[LineDelta], list[LedgerDelta]]:
    """Line and ledger deltas of newly inserted events, each list sorted by key (lock order).

    Revenue is recognised on the UTC day of the event's own time (as consumed), whatever period
    it is invoiced in.
    """
    lines: dict[tuple[str, str, date, str, str], LineDelta] = {}
    ledger: dict[tuple[str, str, date, str], LedgerDelta] = {}
    for billed, where in rows:
        e = billed.event
        line = LineDelta(
            e.customer, e.feature, where.start.date(), where.kind, e.currency, e.unit,
            where.end.date(),
        )  # fmt: skip
        line = lines.setdefault(line.key, line)
        line.event_count += 1
        line.quantity += e.quantity
        line.granted += e.granted
        line.billable += e.billable
        line.amount_nano += e.amount_nano
        day = LedgerDelta(e.customer, e.feature, e.time.date(), e.currency)
        day = ledger.setdefault(day.key, day)
        day.event_count += 1
        day.quantity += e.quantity
        day.amount_nano += e.amount_nano
    return (
        [lines[k] for k in sorted(lines)],
        [ledger[k] for k in sorted(ledger)],
    )


def operator_totals(ledger: Iterable[LedgerDelta]) -> tuple[list[DayTotal], list[MonthSpend]]:
    """What ledger deltas add to the all-customer day totals and to each customer's month,
    each list sorted by key (the stores' lock order: day totals are the hottest rows, so the
    stores upsert them last)."""
    days: dict[tuple[date, str], list[int]] = {}
    months: dict[tuple[date, str, str], list[int]] = {}
    for d in ledger:
        day = days.setdefault((d.day, d.currency), [0, 0])
        day[0] += d.event_count
        day[1] += d.amount_nano
        month = months.setdefault((d.day.replace(day=1), d.customer, d.currency), [0, 0])
        month[0] += d.event_count
        month[1] += d.amount_nano
    return (
        [DayTotal(k[0], k[1], v[0], v[1]) for k, v in sorted(days.items())],
        [MonthSpend(k[0], k[1], k[2], v[0], v[1]) for k, v in sorted(months.items())],
    )
