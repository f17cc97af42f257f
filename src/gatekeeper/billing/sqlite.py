"""BillingStore on a SQLite file (aiosqlite): the embedded default when no DSN is configured.

One connection per store, transactions serialised by an asyncio lock and `BEGIN IMMEDIATE`
(the database write lock), so several processes may share a file: WAL journal, busy timeout,
`synchronous=FULL` (a committed batch survives a power cut before the worker acks it).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path

import aiosqlite

from gatekeeper.billing.codec import (
    ALERT_COLUMNS,
    EVENT_COLUMNS,
    LINE_COLUMNS,
    SQLITE_CONV,
    alert_from_row,
    day_total_from_row,
    event_row,
    ledger_from_row,
    line_from_row,
    month_spend_from_row,
    stored_from_row,
)
from gatekeeper.billing.migrations import BOOTSTRAP, MIGRATIONS, Dialect, render
from gatekeeper.billing.protocol import BillingStoreError, RecordResult
from gatekeeper.billing.rating import aggregate, dedupe, operator_totals, place
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
from gatekeeper.events import AlertEvent
from gatekeeper.money import round_to_minor

__all__ = ["SqliteBillingStore"]

C = SQLITE_CONV
_CHUNK = 500  # host parameters per IN (...) list, well under SQLite's limit

_INSERT_EVENT = (
    f"INSERT INTO usage_events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)
_UPSERT_LINE = """
INSERT INTO invoice_lines (customer, feature, period_start, kind, currency, unit, period_end,
    event_count, quantity, granted, billable_quantity, amount_nano)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (customer, feature, period_start, kind, currency) DO UPDATE SET
    event_count = event_count + excluded.event_count,
    quantity = quantity + excluded.quantity,
    granted = granted + excluded.granted,
    billable_quantity = billable_quantity + excluded.billable_quantity,
    amount_nano = amount_nano + excluded.amount_nano
"""
_UPSERT_LEDGER = """
INSERT INTO revenue_ledger (customer, feature, day, currency, event_count, quantity, amount_nano)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (customer, feature, day, currency) DO UPDATE SET
    event_count = event_count + excluded.event_count,
    quantity = quantity + excluded.quantity,
    amount_nano = amount_nano + excluded.amount_nano
"""

_UPSERT_MONTH = """
INSERT INTO spend_monthly (month, customer, currency, event_count, amount_nano)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (month, customer, currency) DO UPDATE SET
    event_count = event_count + excluded.event_count,
    amount_nano = amount_nano + excluded.amount_nano
"""
_UPSERT_DAY = """
INSERT INTO revenue_daily (day, currency, event_count, amount_nano) VALUES (?, ?, ?, ?)
ON CONFLICT (day, currency) DO UPDATE SET
    event_count = event_count + excluded.event_count,
    amount_nano = amount_nano + excluded.amount_nano
"""


def _transient(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in text or "busy" in text or "disk i/o" in text
    )


class SqliteBillingStore:
    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_ms: int = 30_000) -> SqliteBillingStore:
        """Open (creating) the file and apply pending migrations. Raises BillingStoreError."""
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
            for pragma in (
                "journal_mode=WAL",
                "synchronous=FULL",
                f"busy_timeout={busy_timeout_ms}",
                "foreign_keys=ON",
            ):
                await conn.execute(f"PRAGMA {pragma}")
        except sqlite3.Error as exc:
            raise BillingStoreError(f"cannot open SQLite {path}: {exc}", transient=False) from exc
        store = cls(conn, str(path))
        await store.migrate()
        return store

    @asynccontextmanager
    async def _tx(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
                await self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BillingStoreError(
                    f"SQLite {self.path}: {what} failed: {exc}", transient=_transient(exc)
                ) from exc

    async def migrate(self) -> list[int]:
        """Apply migrations not yet recorded; returns the versions applied now."""
        applied: list[int] = []
        async with self._tx("migrate") as db:
            await db.execute(render(BOOTSTRAP, Dialect.SQLITE))
            rows = await db.execute_fetchall("SELECT version FROM schema_migrations")
            done = {r[0] for r in rows}
            for m in MIGRATIONS:
                if m.version in done:
                    continue
                # executescript would COMMIT our transaction: run statement by statement.
                for statement in _statements(m.sql(Dialect.SQLITE)):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    (m.version, m.name),
                )
                applied.append(m.version)
        return applied

    async def record(self, events: Sequence[BilledEvent]) -> RecordResult:
        unique = dedupe(events)
        if not unique:
            return RecordResult(0, len(events))
        async with self._tx("record") as db:
            existing: set[str] = set()
            ids = [b.event.id for b in unique]
            for i in range(0, len(ids), _CHUNK):
                part = ids[i : i + _CHUNK]
                marks = ", ".join("?" for _ in part)
                rows = await db.execute_fetchall(
                    f"SELECT id FROM usage_events WHERE id IN ({marks})", part
                )
                existing.update(r[0] for r in rows)
            fresh = [b for b in unique if b.event.id not in existing]
            if fresh:
                closed = await self._closed(db, fresh)
                placed = [(b, place(b, closed)) for b in fresh]
                await db.executemany(_INSERT_EVENT, [event_row(b, p, C) for b, p in placed])
                lines, ledger = aggregate(placed)
                await db.executemany(
                    _UPSERT_LINE,
                    [(ln.customer, ln.feature, C.day(ln.period_start), ln.kind.value, ln.currency,
                      ln.unit, C.day(ln.period_end), ln.event_count, ln.quantity, ln.granted,
                      ln.billable, ln.amount_nano) for ln in lines],
                )  # fmt: skip
                await self._round_lines(db, [ln.key for ln in lines])
                await db.executemany(
                    _UPSERT_LEDGER,
                    [(d.customer, d.feature, C.day(d.day), d.currency, d.event_count, d.quantity,
                      d.amount_nano) for d in ledger],
                )  # fmt: skip
                days, months = operator_totals(ledger)
                await db.executemany(
                    _UPSERT_MONTH,
                    [(C.day(m.month), m.customer, m.currency, m.event_count, m.amount_nano)
                     for m in months],
                )  # fmt: skip
                await db.executemany(
                    _UPSERT_DAY,
                    [(C.day(d.day), d.currency, d.event_count, d.amount_nano) for d in days],
                )
        return RecordResult(len(fresh), len(events) - len(fresh))

    @staticmethod
    async def _round_lines(
        db: aiosqlite.Connection, keys: list[tuple[str, str, date, str, str]]
    ) -> None:
        """Set amount_minor from each touched line's new total (rounded once, half-even)."""
        for i in range(0, len(keys), _CHUNK // 5):
            part = keys[i : i + _CHUNK // 5]
            values = ", ".join("(?, ?, ?, ?, ?)" for _ in part)
            args = [v for k in part for v in (k[0], k[1], C.day(k[2]), k[3], k[4])]
            rows = await db.execute_fetchall(
                "SELECT id, amount_nano, currency FROM invoice_lines WHERE "
                f"(customer, feature, period_start, kind, currency) IN (VALUES {values})",
                args,
            )
            await db.executemany(
                "UPDATE invoice_lines SET amount_minor = ? WHERE id = ?",
                [(round_to_minor(r[1], r[2]), r[0]) for r in rows],
            )

    @staticmethod
    async def _closed(db: aiosqlite.Connection, fresh: list[BilledEvent]) -> set[tuple[str, date]]:
        customers = sorted({b.event.customer for b in fresh})
        since = min(b.period_start for b in fresh).date()
        closed: set[tuple[str, date]] = set()
        for i in range(0, len(customers), _CHUNK):
            part = customers[i : i + _CHUNK]
            marks = ", ".join("?" for _ in part)
            rows = await db.execute_fetchall(
                "SELECT customer, period_start FROM billing_periods WHERE status = 'closed' "
                f"AND period_start >= ? AND customer IN ({marks})",
                [C.day(since), *part],
            )
            closed.update((r[0], C.parse_day(r[1])) for r in rows)
        return closed

    async def close_period(self, customer: str, period_start: date, *, at: datetime) -> int:
        async with self._tx("close_period") as db:
            await db.execute(
                "INSERT INTO billing_periods (customer, period_start, status, closed_at) "
                "VALUES (?, ?, 'closed', ?) ON CONFLICT (customer, period_start) DO UPDATE SET "
                "status = 'closed', closed_at = COALESCE(closed_at, excluded.closed_at)",
                (customer, C.day(period_start), C.ts(at)),
            )
            cur = await db.execute(
                "UPDATE invoice_lines SET status = 'closed', closed_at = ? "
                "WHERE customer = ? AND period_start = ? AND status = 'open'",
                (C.ts(at), customer, C.day(period_start)),
            )
            return cur.rowcount

    async def _fetch(self, sql: str, args: Sequence[object]) -> list[sqlite3.Row]:
        async with self._lock:
            try:
                return list(await self._conn.execute_fetchall(sql, args))
            except sqlite3.Error as exc:
                raise BillingStoreError(
                    f"SQLite {self.path}: query failed: {exc}", transient=_transient(exc)
                ) from exc

    async def invoice_lines(self, customer: str, period_start: date) -> list[InvoiceLine]:
        rows = await self._fetch(
            f"SELECT {', '.join(LINE_COLUMNS)} FROM invoice_lines WHERE customer = ? "
            "AND period_start = ? ORDER BY feature, kind, currency",
            (customer, C.day(period_start)),
        )
        return [line_from_row(r, C) for r in rows]

    async def invoice_events(self, customer: str, period_start: date) -> list[StoredEvent]:
        rows = await self._fetch(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM usage_events WHERE customer = ? "
            "AND invoice_period_start = ? ORDER BY occurred_at, id",
            (customer, C.day(period_start)),
        )
        return [stored_from_row(r, C) for r in rows]

    async def usage_sums(
        self, customer: str, since: datetime, until: datetime
    ) -> dict[str, UsageSums]:
        rows = await self._fetch(
            "SELECT feature, COUNT(*), SUM(quantity), SUM(billable), SUM(amount_nano) "
            "FROM usage_events WHERE customer = ? AND occurred_at >= ? AND occurred_at < ? "
            "GROUP BY feature ORDER BY feature",
            (customer, C.ts(since), C.ts(until)),
        )
        return {r[0]: UsageSums(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    async def customers(self, since: datetime, until: datetime) -> list[str]:
        rows = await self._fetch(
            "SELECT DISTINCT customer FROM usage_events WHERE occurred_at >= ? AND occurred_at < ?"
            " ORDER BY customer",
            (C.ts(since), C.ts(until)),
        )
        return [r[0] for r in rows]

    async def revenue(self, customer: str, first_day: date, last_day: date) -> list[LedgerRow]:
        rows = await self._fetch(
            "SELECT customer, feature, day, currency, event_count, quantity, amount_nano "
            "FROM revenue_ledger WHERE customer = ? AND day >= ? AND day <= ? "
            "ORDER BY day, feature",
            (customer, C.day(first_day), C.day(last_day)),
        )
        return [ledger_from_row(r, C) for r in rows]

    async def day_totals(self, first_day: date, last_day: date) -> list[DayTotal]:
        rows = await self._fetch(
            "SELECT day, currency, event_count, amount_nano FROM revenue_daily "
            "WHERE day >= ? AND day <= ? ORDER BY day, currency",
            (C.day(first_day), C.day(last_day)),
        )
        return [day_total_from_row(r, C) for r in rows]

    async def top_spenders(self, month: date, currency: str, limit: int) -> list[MonthSpend]:
        rows = await self._fetch(
            "SELECT month, customer, currency, event_count, amount_nano FROM spend_monthly "
            "WHERE month = ? AND currency = ? ORDER BY amount_nano DESC, customer LIMIT ?",
            (C.day(month.replace(day=1)), currency, limit),
        )
        return [month_spend_from_row(r, C) for r in rows]

    async def events(self, query: EventQuery) -> list[StoredEvent]:
        where: list[str] = ["customer = ?"]
        args: list[object] = [query.customer]
        if query.feature is not None:
            where.append("feature = ?")
            args.append(query.feature)
        if query.since is not None:
            where.append("occurred_at >= ?")
            args.append(C.ts(query.since))
        if query.until is not None:
            where.append("occurred_at < ?")
            args.append(C.ts(query.until))
        if query.after is not None:
            where.append("(occurred_at > ? OR (occurred_at = ? AND id > ?))")
            args += [C.ts(query.after[0]), C.ts(query.after[0]), query.after[1]]
        rows = await self._fetch(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM usage_events WHERE {' AND '.join(where)} "
            "ORDER BY occurred_at, id LIMIT ?",
            (*args, query.limit),
        )
        return [stored_from_row(r, C) for r in rows]

    async def alerts(
        self, customer: str, *, limit: int = 100, before: datetime | None = None
    ) -> list[LoggedAlert]:
        bound = "" if before is None else "AND occurred_at < ? "
        args: tuple[object, ...] = (customer,) if before is None else (customer, C.ts(before))
        rows = await self._fetch(
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM alert_log WHERE customer = ? {bound}"
            "ORDER BY occurred_at DESC, id DESC LIMIT ?",
            (*args, limit),
        )
        return [alert_from_row(r, C) for r in rows]

    async def event_count(self) -> int:
        rows = await self._fetch("SELECT COUNT(*) FROM usage_events", ())
        return int(rows[0][0])

    async def insert_alert(self, alert: AlertEvent, *, delivered_at: datetime | None) -> bool:
        async with self._tx("insert_alert") as db:
            cur = await db.execute(
                'INSERT INTO alert_log (id, kind, customer, feature, threshold, used, "limit", '
                "period_start, period_end, occurred_at, decision_id, delivered_at, cause, "
                "at_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (alert.id, alert.kind.value, alert.customer, alert.feature, alert.threshold,
                 alert.used, alert.limit, C.ts(alert.period_start), C.ts(alert.period_end),
                 C.ts(alert.time), alert.decision_id,
                 None if delivered_at is None else C.ts(delivered_at), alert.cause or None,
                 alert.at),
            )  # fmt: skip
            return cur.rowcount == 1

    async def mark_alert_delivered(self, alert_id: str, *, at: datetime) -> bool:
        async with self._tx("mark_alert_delivered") as db:
            cur = await db.execute(
                "UPDATE alert_log SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
                (C.ts(at), alert_id),
            )
            return cur.rowcount == 1

    async def close(self) -> None:
        await self._conn.close()


def _statements(script: str) -> list[str]:
    """Split a migration into complete statements (trigger bodies stay whole)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
