"""Billing stores (DESIGN.md §2 billing path): immutable usage events, invoice lines per
customer x feature x billing period, a revenue ledger per day, and the alert log."""

from gatekeeper.billing.connect import DEFAULT_SQLITE_PATH, describe_dsn, open_store, sqlite_file
from gatekeeper.billing.periods import BillingCalendar, PeriodArg, parse_period
from gatekeeper.billing.postgres import PostgresBillingStore
from gatekeeper.billing.protocol import BillingStore, BillingStoreError, RecordResult
from gatekeeper.billing.sqlite import SqliteBillingStore
from gatekeeper.billing.types import (
    BilledEvent,
    DayTotal,
    InvoiceLine,
    LedgerRow,
    LineKind,
    LineStatus,
    MonthSpend,
    StoredEvent,
    UsageSums,
)

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "BilledEvent",
    "BillingCalendar",
    "BillingStore",
    "BillingStoreError",
    "DayTotal",
    "InvoiceLine",
    "LedgerRow",
    "LineKind",
    "LineStatus",
    "MonthSpend",
    "PeriodArg",
    "PostgresBillingStore",
    "RecordResult",
    "SqliteBillingStore",
    "StoredEvent",
    "UsageSums",
    "describe_dsn",
    "open_store",
    "parse_period",
    "sqlite_file",
]
