"""BillingStore on PostgreSQL (asyncpg): the production store.

A batch is one transaction: COPY into a per-connection temp staging table, then one
`INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING RETURNING id` so only new events move the
lines and ledger (upserted from arrays with `unnest`). Lock order is fixed (period rows, events,
lines, ledger rows, each sorted by key) so concurrent workers do not deadlock; a deadlock or
serialization failure is still reported as transient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from gatekeeper.billing.codec import (
    ALERT_COLUMNS,
    EVENT_COLUMNS,
    LINE_COLUMNS,
    PG_CONV,
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
from gatekeeper.billing.rating import Placement, aggregate, dedupe, operator_totals, place
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

__all__ = ["PostgresBillingStore"]

C = PG_CONV
_MIGRATION_LOCK = 0x67617465  # pg_advisory_xact_lock key: one migrator at a time
_STAGING = "gk_staging_usage"
_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    id TEXT, stream_id TEXT, kind TEXT, customer TEXT, plan TEXT, feature TEXT, unit TEXT,
    quantity BIGINT, granted BIGINT, billable BIGINT, amount_nano BIGINT, currency TEXT,
    decision_id TEXT, request_id TEXT, idempotency_key TEXT, occurred_at TIMESTAMPTZ,
    overage BOOLEAN, estimate BIGINT, actual BIGINT, period_start DATE,
    invoice_period_start DATE, line_kind TEXT
) ON COMMIT DELETE ROWS
"""
_COLS = ", ".join(EVENT_COLUMNS)
_INSERT_FROM_STAGING = (
    f"INSERT INTO usage_events ({_COLS}) SELECT {_COLS} FROM {_STAGING} ORDER BY id "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
_UPSERT_LINES = """
INSERT INTO invoice_lines AS l (customer, feature, period_start, kind, currency, unit, period_end,
    event_count, quantity, granted, billable_quantity, amount_nano)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::text[], $6::text[],
    $7::date[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[])
ON CONFLICT (customer, feature, period_start, kind, currency) DO UPDATE SET
    event_count = l.event_count + excluded.event_count,
    quantity = l.quantity + excluded.quantity,
    granted = l.granted + excluded.granted,
    billable_quantity = l.billable_quantity + excluded.billable_quantity,
    amount_nano = l.amount_nano + excluded.amount_nano
RETURNING id, amount_nano, currency
"""
_SET_MINOR = """
UPDATE invoice_lines l SET amount_minor = v.m FROM unnest($1::bigint[], $2::bigint[]) AS v(id, m)
WHERE l.id = v.id
"""
_UPSERT_LEDGER = """
INSERT INTO revenue_ledger AS r (customer, feature, day, currency, event_count, quantity,
    amount_nano)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::bigint[], $6::bigint[],
    $7::bigint[])
ON CONFLICT (customer, feature, day, currency) DO UPDATE SET
    event_count = r.event_count + excluded.event_count,
    quantity = r.quantity + excluded.quantity,
    amount_nano = r.amount_nano + excluded.amount_nano
"""
_UPSERT_MONTHS = """
INSERT INTO spend_monthly AS m (month, customer, currency, event_count, amount_nano)
SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
ON CONFLICT (month, customer, currency) DO UPDATE SET
    event_count = m.event_count + excluded.event_count,
    amount_nano = m.amount_nano + excluded.amount_nano
"""
_UPSERT_DAYS = """
INSERT INTO revenue_daily AS d (day, currency, event_count, amount_nano)
SELECT * FROM unnest($1::date[], $2::text[], $3::bigint[], $4::bigint[])
ON CONFLICT (day, currency) DO UPDATE SET
    event_count = d.event_count + excluded.event_count,
    amount_nano = d.amount_nano + excluded.amount_nano
"""
_ENSURE_PERIODS = """
INSERT INTO billing_periods (customer, period_start)
SELECT * FROM unnest($1::text[], $2::date[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING
"""
_LOCK_PERIODS = """
SELECT p.customer, p.period_start, p.status FROM billing_periods p
JOIN unnest($1::text[], $2::date[]) AS k(customer, period_start)
  ON p.customer = k.customer AND p.period_start = k.period_start
ORDER BY 1, 2 FOR SHARE OF p
"""
_TRANSIENT_STATES = {"40001", "40P01", "55P03", "57014", "53300"}


def _error(what: str, exc: BaseException) -> BillingStoreError:
    state = getattr(exc, "sqlstate", None)
    transient = (
        isinstance(exc, OSError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError)
        or state in _TRANSIENT_STATES
        or (isinstance(state, str) and state.startswith("08"))
    )
    return BillingStoreError(f"PostgreSQL: {what} failed: {exc}", transient=transient)


class PostgresBillingStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        server_settings: Mapping[str, str] | None = None,
    ) -> PostgresBillingStore:
        """Open a pool and apply pending migrations. Raises BillingStoreError."""
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                server_settings=dict(server_settings or {}),
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _error("connect", exc) from exc
        store = cls(pool)
        try:
            await store.migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def migrate(self) -> list[int]:
        """Apply migrations not yet recorded (one migrator at a time); returns versions applied."""
        applied: list[int] = []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute(render(BOOTSTRAP, Dialect.POSTGRES))
                done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for m in MIGRATIONS:
                    if m.version not in done:
                        await conn.execute(m.sql(Dialect.POSTGRES))
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                            m.version, m.name,
                        )  # fmt: skip
                        applied.append(m.version)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _error("migrate", exc) from exc
        return applied

    async def record(self, events: Sequence[BilledEvent]) -> RecordResult:
        unique = dedupe(events)
        if not unique:
            return RecordResult(0, len(events))
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                placed = await self._place(conn, unique)
                await conn.execute(_CREATE_STAGING)
                await conn.copy_records_to_table(
                    _STAGING,
                    records=[event_row(b, p, C) for b, p in placed.values()],
                    columns=EVENT_COLUMNS,
                )
                ids = [r[0] for r in await conn.fetch(_INSERT_FROM_STAGING)]
                if ids:
                    await self._sums(conn, [placed[i] for i in sorted(ids)])
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _error("record", exc) from exc
        return RecordResult(len(ids), len(events) - len(ids))

    @staticmethod
    async def _place(
        conn: asyncpg.Connection, unique: list[BilledEvent]
    ) -> dict[str, tuple[BilledEvent, Placement]]:
        """Place each event; the target period rows stay share-locked until commit, so a
        concurrent close_period waits for this batch (or this batch sees it closed)."""
        customers = sorted({b.event.customer for b in unique})
        since = min(b.period_start for b in unique).date()
        rows = await conn.fetch(
            "SELECT customer, period_start FROM billing_periods WHERE status = 'closed' "
            "AND period_start >= $1 AND customer = ANY($2::text[])",
            since, customers,
        )  # fmt: skip
        closed = {(r[0], r[1]) for r in rows}
        while True:
            placed = {b.event.id: (b, place(b, closed)) for b in unique}
            targets = sorted({(b.event.customer, p.start.date()) for b, p in placed.values()})
            cols = ([t[0] for t in targets], [t[1] for t in targets])
            await conn.execute(_ENSURE_PERIODS, *cols)
            now_closed = {
                (r[0], r[1]) for r in await conn.fetch(_LOCK_PERIODS, *cols) if r[2] == "closed"
            }
            if not now_closed:
                return placed
            closed |= now_closed  # closed while we looked: place again

    @staticmethod
    async def _sums(conn: asyncpg.Connection, rows: list[tuple[BilledEvent, Placement]]) -> None:
        lines, ledger = aggregate(rows)
        line_cols: list[list[Any]] = [[] for _ in range(12)]
        for ln in lines:
            values = (ln.customer, ln.feature, ln.period_start, ln.kind.value, ln.currency,
                      ln.unit, ln.period_end, ln.event_count, ln.quantity, ln.granted,
                      ln.billable, ln.amount_nano)  # fmt: skip
            for col, v in zip(line_cols, values, strict=True):
                col.append(v)
        totals = await conn.fetch(_UPSERT_LINES, *line_cols)
        await conn.execute(
            _SET_MINOR,
            [r[0] for r in totals],
            [round_to_minor(r[1], r[2]) for r in totals],
        )
        ledger_cols: list[list[Any]] = [[] for _ in range(7)]
        for d in ledger:
            values2 = (d.customer, d.feature, d.day, d.currency, d.event_count, d.quantity,
                       d.amount_nano)  # fmt: skip
            for col, v in zip(ledger_cols, values2, strict=True):
                col.append(v)
        await conn.execute(_UPSERT_LEDGER, *ledger_cols)
        # last: a day's total is one row every batch of that day updates (held until commit)
        days, months = operator_totals(ledger)
        await conn.execute(
            _UPSERT_MONTHS,
            [m.month for m in months], [m.customer for m in months],
            [m.currency for m in months], [m.event_count for m in months],
            [m.amount_nano for m in months],
        )  # fmt: skip
        await conn.execute(
            _UPSERT_DAYS,
            [d.day for d in days], [d.currency for d in days], [d.event_count for d in days],
            [d.amount_nano for d in days],
        )  # fmt: skip

    async def close_period(self, customer: str, period_start: date, *, at: datetime) -> int:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO billing_periods AS p (customer, period_start, status, closed_at) "
                    "VALUES ($1, $2, 'closed', $3) ON CONFLICT (customer, period_start) DO UPDATE "
                    "SET status = 'closed', closed_at = COALESCE(p.closed_at, excluded.closed_at)",
                    customer, period_start, at,
                )  # fmt: skip
                status = await conn.execute(
                    "UPDATE invoice_lines SET status = 'closed', closed_at = $3 "
                    "WHERE customer = $1 AND period_start = $2 AND status = 'open'",
                    customer, period_start, at,
                )  # fmt: skip
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _error("close_period", exc) from exc
        return int(status.split()[-1])

    async def _fetch(self, what: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with self._pool.acquire() as conn:
                return list(await conn.fetch(sql, *args))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _error(what, exc) from exc

    async def invoice_lines(self, customer: str, period_start: date) -> list[InvoiceLine]:
        rows = await self._fetch(
            "invoice_lines",
            f"SELECT {', '.join(LINE_COLUMNS)} FROM invoice_lines WHERE customer = $1 "
            "AND period_start = $2 ORDER BY feature, kind, currency",
            customer, period_start,
        )  # fmt: skip
        return [line_from_row(r, C) for r in rows]

    async def invoice_events(self, customer: str, period_start: date) -> list[StoredEvent]:
        rows = await self._fetch(
            "invoice_events",
            f"SELECT {_COLS} FROM usage_events WHERE customer = $1 "
            "AND invoice_period_start = $2 ORDER BY occurred_at, id",
            customer, period_start,
        )  # fmt: skip
        return [stored_from_row(r, C) for r in rows]

    async def usage_sums(
        self, customer: str, since: datetime, until: datetime
    ) -> dict[str, UsageSums]:
        rows = await self._fetch(
            "usage_sums",
            "SELECT feature, COUNT(*), SUM(quantity)::bigint, SUM(billable)::bigint, "
            "SUM(amount_nano)::bigint FROM usage_events WHERE customer = $1 "
            "AND occurred_at >= $2 AND occurred_at < $3 GROUP BY feature ORDER BY feature",
            customer, since, until,
        )  # fmt: skip
        return {r[0]: UsageSums(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    async def customers(self, since: datetime, until: datetime) -> list[str]:
        rows = await self._fetch(
            "customers",
            "SELECT DISTINCT customer FROM usage_events WHERE occurred_at >= $1 "
            "AND occurred_at < $2 ORDER BY customer",
            since, until,
        )  # fmt: skip
        return [r[0] for r in rows]

    async def revenue(self, customer: str, first_day: date, last_day: date) -> list[LedgerRow]:
        rows = await self._fetch(
            "revenue",
            "SELECT customer, feature, day, currency, event_count, quantity, amount_nano "
            "FROM revenue_ledger WHERE customer = $1 AND day >= $2 AND day <= $3 "
            "ORDER BY day, feature",
            customer, first_day, last_day,
        )  # fmt: skip
        return [ledger_from_row(r, C) for r in rows]

    async def day_totals(self, first_day: date, last_day: date) -> list[DayTotal]:
        rows = await self._fetch(
            "day_totals",
            "SELECT day, currency, event_count, amount_nano FROM revenue_daily "
            "WHERE day >= $1 AND day <= $2 ORDER BY day, currency",
            first_day, last_day,
        )  # fmt: skip
        return [day_total_from_row(r, C) for r in rows]

    async def top_spenders(self, month: date, currency: str, limit: int) -> list[MonthSpend]:
        rows = await self._fetch(
            "top_spenders",
            "SELECT month, customer, currency, event_count, amount_nano FROM spend_monthly "
            "WHERE month = $1 AND currency = $2 ORDER BY amount_nano DESC, customer LIMIT $3",
            month.replace(day=1), currency, limit,
        )  # fmt: skip
        return [month_spend_from_row(r, C) for r in rows]

    async def events(self, query: EventQuery) -> list[StoredEvent]:
        where: list[str] = ["customer = $1"]
        args: list[object] = [query.customer]
        if query.feature is not None:
            args.append(query.feature)
            where.append(f"feature = ${len(args)}")
        if query.since is not None:
            args.append(query.since)
            where.append(f"occurred_at >= ${len(args)}")
        if query.until is not None:
            args.append(query.until)
            where.append(f"occurred_at < ${len(args)}")
        if query.after is not None:
            args += [query.after[0], query.after[1]]
            n = len(args)
            where.append(f"(occurred_at > ${n - 1} OR (occurred_at = ${n - 1} AND id > ${n}))")
        args.append(query.limit)
        rows = await self._fetch(
            "events",
            f"SELECT {_COLS} FROM usage_events WHERE {' AND '.join(where)} "
            f"ORDER BY occurred_at, id LIMIT ${len(args)}",
            *args,
        )
        return [stored_from_row(r, C) for r in rows]

    async def alerts(
        self, customer: str, *, limit: int = 100, before: datetime | None = None
    ) -> list[LoggedAlert]:
        cols = ", ".join(ALERT_COLUMNS)
        if before is None:
            sql = (f"SELECT {cols} FROM alert_log WHERE customer = $1 "
                   "ORDER BY occurred_at DESC, id DESC LIMIT $2")  # fmt: skip
            rows = await self._fetch("alerts", sql, customer, limit)
        else:
            sql = (f"SELECT {cols} FROM alert_log WHERE customer = $1 AND occurred_at < $2 "
                   "ORDER BY occurred_at DESC, id DESC LIMIT $3")  # fmt: skip
            rows = await self._fetch("alerts", sql, customer, before, limit)
        return [alert_from_row(r, C) for r in rows]

    async def event_count(self) -> int:
        rows = await self._fetch("event_count", "SELECT COUNT(*) FROM usage_events")
        return int(rows[0][0])

    async def insert_alert(self, alert: AlertEvent, *, delivered_at: datetime | None) -> bool:
        rows = await self._fetch(
            "insert_alert",
            'INSERT INTO alert_log (id, kind, customer, feature, threshold, used, "limit", '
            "period_start, period_end, occurred_at, decision_id, delivered_at, cause, at_value) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
            "ON CONFLICT (id) DO NOTHING RETURNING id",
            alert.id, alert.kind.value, alert.customer, alert.feature, alert.threshold,
            alert.used, alert.limit, alert.period_start, alert.period_end, alert.time,
            alert.decision_id, delivered_at, alert.cause or None, alert.at,
        )  # fmt: skip
        return bool(rows)

    async def mark_alert_delivered(self, alert_id: str, *, at: datetime) -> bool:
        rows = await self._fetch(
            "mark_alert_delivered",
            "UPDATE alert_log SET delivered_at = $2 WHERE id = $1 AND delivered_at IS NULL "
            "RETURNING id",
            alert_id, at,
        )  # fmt: skip
        return bool(rows)

    async def close(self) -> None:
        await self._pool.close()
