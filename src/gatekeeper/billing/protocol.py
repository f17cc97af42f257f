"""The billing store port: what the worker, export and reconcile need from a database.

Implementations: `SqliteBillingStore` (embedded default) and `PostgresBillingStore`. Both
pass the same test suite. Errors: `BillingStoreError` with `transient=True` when retrying the
same call may succeed (connection lost, lock timeout, deadlock), False when it cannot (bad data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from gatekeeper.billing.types import (
    BilledEvent,
    DayTotal,
    EventQuery,
    InvoiceLine,
    LedgerRow,
    LoggedAlert,
    MonthSpend,
    StoredEvent,
    UsageSums,
)
from gatekeeper.errors import GatekeeperError
from gatekeeper.events import AlertEvent

__all__ = ["BillingStore", "BillingStoreError", "RecordResult"]


class BillingStoreError(GatekeeperError):
    """The billing store failed a call. `transient` = the same call may succeed later."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class RecordResult:
    inserted: int  # events new to the store (lines and ledger moved by exactly these)
    duplicates: int  # events already stored (or repeated in the batch): nothing changed


class BillingStore(Protocol):
    """A billing database. Every method is one transaction; all are safe to call concurrently."""

    async def record(self, events: Sequence[BilledEvent]) -> RecordResult:
        """Store events idempotently (event id = primary key) with their lines and ledger rows.

        Atomic: the events actually inserted, the invoice lines and the revenue ledger move
        together in one transaction; duplicates change nothing. Raises BillingStoreError.
        """
        ...

    async def close_period(self, customer: str, period_start: date, *, at: datetime) -> int:
        """Freeze the customer's period (irreversible); returns the number of lines closed.

        Events of a closed period arriving later are billed on a `late` line of the next open
        period. Raises BillingStoreError.
        """
        ...

    async def invoice_lines(self, customer: str, period_start: date) -> list[InvoiceLine]:
        """Lines invoiced in the period starting `period_start`, ordered by feature and kind."""
        ...

    async def invoice_events(self, customer: str, period_start: date) -> list[StoredEvent]:
        """Events invoiced in that period (on any of its lines), ordered by time then id."""
        ...

    async def usage_sums(
        self, customer: str, since: datetime, until: datetime
    ) -> dict[str, UsageSums]:
        """Per-feature sums of the customer's events with since <= time < until."""
        ...

    async def customers(self, since: datetime, until: datetime) -> list[str]:
        """Customers with at least one event with since <= time < until, sorted."""
        ...

    async def revenue(self, customer: str, first_day: date, last_day: date) -> list[LedgerRow]:
        """Recognised revenue rows with first_day <= day <= last_day, ordered by day, feature."""
        ...

    async def day_totals(self, first_day: date, last_day: date) -> list[DayTotal]:
        """Revenue recognised per day over every customer, first_day <= day <= last_day,
        ordered by day and currency (pre-aggregated: one row per day and currency)."""
        ...

    async def top_spenders(self, month: date, currency: str, limit: int) -> list[MonthSpend]:
        """The `limit` customers who spent the most in `month` (its first day) in `currency`,
        most first (ties by customer id); an index walk, whatever the number of customers."""
        ...

    async def events(self, query: EventQuery) -> list[StoredEvent]:
        """One page of the customer's events matching `query`, oldest first (time, then id)."""
        ...

    async def alerts(
        self, customer: str, *, limit: int = 100, before: datetime | None = None
    ) -> list[LoggedAlert]:
        """The customer's logged alerts, newest first, occurred before `before` when given."""
        ...

    async def event_count(self) -> int:
        """All stored events (every customer)."""
        ...

    async def insert_alert(self, alert: AlertEvent, *, delivered_at: datetime | None) -> bool:
        """Log an alert once (its id is the key); False when it was already logged."""
        ...

    async def mark_alert_delivered(self, alert_id: str, *, at: datetime) -> bool:
        """Set delivered_at of a logged, undelivered alert; False when none was updated."""
        ...

    async def close(self) -> None:
        """Release connections. The store is unusable afterwards."""
        ...
