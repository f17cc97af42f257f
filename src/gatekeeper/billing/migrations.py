"""Versioned schema of the billing store, one SQL text per step with tiny dialect differences.

Each `Migration` is applied once, in version order, inside a transaction that also records it in
`schema_migrations`. Tokens replaced per dialect: @ID_PK@ (auto-increment key), @TS@ (a UTC
instant), @DATE@ (a UTC calendar date), @BOOL@, @NOW@. SQLite holds instants and dates as ISO
text in one fixed format, so they sort and compare like the PostgreSQL types.

Never edit a released migration: add the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BOOTSTRAP", "MIGRATIONS", "Dialect", "Migration", "render"]


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


_TOKENS = {
    Dialect.SQLITE: {
        "@ID_PK@": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "@TS@": "TEXT",
        "@DATE@": "TEXT",
        "@BOOL@": "INTEGER",
        "@NOW@": "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    },
    Dialect.POSTGRES: {
        "@ID_PK@": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "@TS@": "TIMESTAMPTZ",
        "@DATE@": "DATE",
        "@BOOL@": "BOOLEAN",
        "@NOW@": "now()",
    },
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    common: str
    sqlite: str = ""  # dialect-only statements, run after `common`
    postgres: str = ""

    def sql(self, dialect: Dialect) -> str:
        return render(self.common + (self.sqlite if dialect is Dialect.SQLITE else self.postgres),
                      dialect)  # fmt: skip


def render(text: str, dialect: Dialect) -> str:
    """`text` with the dialect tokens replaced."""
    for token, value in _TOKENS[dialect].items():
        text = text.replace(token, value)
    return text


BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at @TS@ NOT NULL DEFAULT @NOW@
);
"""

_V1 = """
CREATE TABLE usage_events (
    id TEXT PRIMARY KEY,                 -- idempotency key of the whole billing path
    stream_id TEXT NOT NULL,             -- Redis entry id it was read from (audit)
    kind TEXT NOT NULL,                  -- usage | reservation | adjustment
    customer TEXT NOT NULL,
    plan TEXT NOT NULL,
    feature TEXT NOT NULL,
    unit TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    granted BIGINT NOT NULL,
    billable BIGINT NOT NULL,
    amount_nano BIGINT NOT NULL,         -- rated by the decision script; authoritative
    currency TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    occurred_at @TS@ NOT NULL,
    overage @BOOL@ NOT NULL,
    estimate BIGINT,
    actual BIGINT,
    period_start @DATE@ NOT NULL,        -- billing period of occurred_at
    invoice_period_start @DATE@ NOT NULL, -- period it is invoiced in (later if its own was closed)
    line_kind TEXT NOT NULL,             -- usage | late
    recorded_at @TS@ NOT NULL DEFAULT @NOW@
);
CREATE INDEX usage_events_customer_time ON usage_events (customer, occurred_at);
CREATE INDEX usage_events_invoice ON usage_events (customer, invoice_period_start, feature);

CREATE TABLE billing_periods (
    customer TEXT NOT NULL,
    period_start @DATE@ NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',  -- open | closed (irreversible)
    closed_at @TS@,
    PRIMARY KEY (customer, period_start)
);

CREATE TABLE invoice_lines (
    id @ID_PK@,
    customer TEXT NOT NULL,
    feature TEXT NOT NULL,
    unit TEXT NOT NULL,
    period_start @DATE@ NOT NULL,
    period_end @DATE@ NOT NULL,
    kind TEXT NOT NULL,                  -- usage | late
    currency TEXT NOT NULL,
    event_count BIGINT NOT NULL DEFAULT 0,
    quantity BIGINT NOT NULL DEFAULT 0,
    granted BIGINT NOT NULL DEFAULT 0,
    billable_quantity BIGINT NOT NULL DEFAULT 0,
    amount_nano BIGINT NOT NULL DEFAULT 0,
    amount_minor BIGINT NOT NULL DEFAULT 0, -- half-even rounding of amount_nano, once
    status TEXT NOT NULL DEFAULT 'open',
    closed_at @TS@,
    UNIQUE (customer, feature, period_start, kind, currency)
);

CREATE TABLE revenue_ledger (
    customer TEXT NOT NULL,
    feature TEXT NOT NULL,
    day @DATE@ NOT NULL,
    currency TEXT NOT NULL,
    event_count BIGINT NOT NULL DEFAULT 0,
    quantity BIGINT NOT NULL DEFAULT 0,
    amount_nano BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (customer, feature, day, currency)
);

CREATE TABLE alert_log (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    customer TEXT NOT NULL,
    feature TEXT,                        -- NULL = the spend cap
    threshold INTEGER NOT NULL,
    used BIGINT NOT NULL,
    "limit" BIGINT NOT NULL,
    period_start @TS@ NOT NULL,
    period_end @TS@ NOT NULL,
    occurred_at @TS@ NOT NULL,
    decision_id TEXT NOT NULL,
    delivered_at @TS@
);
CREATE INDEX alert_log_undelivered ON alert_log (delivered_at, occurred_at);
"""

_V1_SQLITE = """
CREATE TRIGGER usage_events_no_update BEFORE UPDATE ON usage_events
BEGIN SELECT RAISE(ABORT, 'usage_events are immutable: record a reversing event'); END;
CREATE TRIGGER usage_events_no_delete BEFORE DELETE ON usage_events
BEGIN SELECT RAISE(ABORT, 'usage_events are immutable: record a reversing event'); END;
CREATE TRIGGER invoice_lines_frozen BEFORE UPDATE ON invoice_lines WHEN OLD.status = 'closed'
BEGIN SELECT RAISE(ABORT, 'invoice line is closed'); END;
"""

_V1_POSTGRES = """
CREATE FUNCTION gk_usage_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'usage_events are immutable: record a reversing event'; END $$;
CREATE TRIGGER usage_events_immutable BEFORE UPDATE OR DELETE ON usage_events
FOR EACH ROW EXECUTE FUNCTION gk_usage_events_immutable();
CREATE FUNCTION gk_invoice_lines_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'invoice line % is closed', OLD.id; END $$;
CREATE TRIGGER invoice_lines_frozen BEFORE UPDATE ON invoice_lines
FOR EACH ROW WHEN (OLD.status = 'closed') EXECUTE FUNCTION gk_invoice_lines_frozen();
"""

# The operator's money view reads these instead of summing every customer's ledger rows:
# revenue per day over all customers, and each customer's spend per calendar month (top
# spenders: an index walk). `record` moves them with the ledger; filled here from the ledger.
_V2 = """
CREATE TABLE revenue_daily (
    day @DATE@ NOT NULL,
    currency TEXT NOT NULL,
    event_count BIGINT NOT NULL DEFAULT 0,
    amount_nano BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, currency)
);
CREATE TABLE spend_monthly (
    month @DATE@ NOT NULL,               -- first day of the calendar month (UTC)
    customer TEXT NOT NULL,
    currency TEXT NOT NULL,
    event_count BIGINT NOT NULL DEFAULT 0,
    amount_nano BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (month, customer, currency)
);
CREATE INDEX spend_monthly_top ON spend_monthly (month, currency, amount_nano DESC, customer);
ALTER TABLE alert_log ADD COLUMN cause TEXT;  -- blocked, resumed: what refused the customer
ALTER TABLE alert_log ADD COLUMN at_value BIGINT;  -- threshold: an absolute point (alert_at)
INSERT INTO revenue_daily (day, currency, event_count, amount_nano)
SELECT day, currency, SUM(event_count), SUM(amount_nano) FROM revenue_ledger
GROUP BY day, currency;
"""

_V2_SQLITE = """
INSERT INTO spend_monthly (month, customer, currency, event_count, amount_nano)
SELECT substr(day, 1, 8) || '01', customer, currency, SUM(event_count), SUM(amount_nano)
FROM revenue_ledger GROUP BY substr(day, 1, 8), customer, currency;
"""

_V2_POSTGRES = """
INSERT INTO spend_monthly (month, customer, currency, event_count, amount_nano)
SELECT date_trunc('month', day)::date, customer, currency, SUM(event_count), SUM(amount_nano)
FROM revenue_ledger GROUP BY 1, customer, currency;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "usage events, periods, invoice lines, revenue ledger, alert log", _V1,
              sqlite=_V1_SQLITE, postgres=_V1_POSTGRES),
    Migration(2, "revenue per day and spend per customer and month (operator totals); a "
              "logged alert's cause and absolute point", _V2,
              sqlite=_V2_SQLITE, postgres=_V2_POSTGRES),
)  # fmt: skip
