"""The operator's money view reads pre-aggregated totals (revenue per day over all customers,
spend per customer and month): on both stores they must equal the sums of the stored events,
through duplicates, adjustments, several months and currencies, and a migration that fills them
from a ledger written before they existed."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.billing import (
    BilledEvent,
    BillingStore,
    PostgresBillingStore,
    SqliteBillingStore,
)
from gatekeeper.events import UsageEvent, UsageKind
from gatekeeper.periods import billing_window
from tests.billing.stores import StoreTarget, raw

T0 = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)  # days run over a month's end
CUSTOMERS = ("acme", "globex", "initech", "umbrella")


def _event(n: int, customer: str, day: int, amount: int, currency: str = "USD") -> BilledEvent:
    when = T0 + timedelta(days=day, minutes=n)
    window = billing_window(when, None)
    adjustment = amount < 0
    return BilledEvent(
        UsageEvent(
            id=f"e{n}", kind=UsageKind.ADJUSTMENT if adjustment else UsageKind.USAGE,
            customer=customer, plan="pro", feature="tokens", unit="token",
            quantity=-1 if adjustment else 1, granted=0, billable=-1 if adjustment else 1,
            amount_nano=amount, currency=currency, decision_id=f"d{n}", request_id="",
            idempotency_key="", time=when,
            estimate=1 if adjustment else None, actual=0 if adjustment else None,
        ),
        window.start, window.end, None, f"{n}-0",
    )  # fmt: skip


def _expected(events: list[BilledEvent]) -> tuple[dict, dict]:  # type: ignore[type-arg]
    days: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    months: dict[tuple[date, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for b in {b.event.id: b for b in events}.values():  # the first of each id is stored
        e = b.event
        for row in (days[(e.time.date(), e.currency)],
                    months[(e.time.date().replace(day=1), e.customer, e.currency)]):  # fmt: skip
            row[0] += 1
            row[1] += e.amount_nano
    return dict(days), dict(months)


async def _check(store: BillingStore, events: list[BilledEvent]) -> None:
    days, months = _expected(events)
    got = await store.day_totals(date(2026, 11, 1), date(2027, 1, 31))
    assert {(d.day, d.currency): [d.event_count, d.amount_nano] for d in got} == days
    for month in (date(2026, 11, 1), date(2026, 12, 1)):
        for currency in ("USD", "EUR"):
            want = sorted(
                ((k[1], v) for k, v in months.items() if k[0] == month and k[2] == currency),
                key=lambda kv: (-kv[1][1], kv[0]),
            )
            top = await store.top_spenders(month, currency, 3)
            assert [(s.customer, [s.event_count, s.amount_nano]) for s in top] == want[:3]
            assert all(s.month == month and s.currency == currency for s in top)
    # and the same from the ledger every customer view reads
    ledger = await raw(store, "SELECT SUM(amount_nano) FROM revenue_ledger")
    assert int(ledger[0][0] or 0) == sum(v[1] for v in days.values())


async def test_totals_are_the_sums_of_the_stored_events(store: BillingStore) -> None:
    events = [
        _event(1, "acme", 0, 5_000_000_000),
        _event(2, "acme", 0, 250_000_000),
        _event(3, "globex", 0, 7_000_000_000),
        _event(4, "globex", 1, -7_000_000_000),  # a void: globex nets to zero in November
        _event(5, "initech", 4, 1_000),  # December
        _event(6, "umbrella", 4, 2_000, "EUR"),
        _event(7, "umbrella", 5, 3, "EUR"),
        _event(8, "acme", 5, 999),
    ]
    await store.record(events[:5])
    await store.record(events)  # duplicates move nothing
    await _check(store, events)
    (today,) = await store.day_totals(date(2026, 11, 27), date(2026, 11, 27))
    assert (today.event_count, today.amount_nano) == (3, 12_250_000_000)
    top = await store.top_spenders(date(2026, 11, 15), "USD", 10)  # any day names its month
    assert [(s.customer, s.amount_nano) for s in top] == [("acme", 5_250_000_000),
                                                          ("globex", 0)]  # fmt: skip


_BATCH = st.lists(
    st.tuples(
        st.integers(0, 30),  # event number (repeats are duplicates)
        st.sampled_from(CUSTOMERS),
        st.integers(0, 8),  # day offset: November and December
        st.integers(-(10**10), 10**10),
        st.sampled_from(("USD", "EUR")),
    ),
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(_BATCH, min_size=1, max_size=4))
async def test_totals_match_the_events_for_any_batches(
    store_target: StoreTarget, batches: list[list[tuple[int, str, int, int, str]]]
) -> None:
    store = await store_target.open()
    try:
        await raw_reset(store)
        # an id is one event: its first version wins, whatever a later batch says
        first: dict[int, tuple[str, int, int, str]] = {}
        recorded: list[BilledEvent] = []
        for batch in batches:
            events = []
            for n, customer, day, amount, currency in batch:
                first.setdefault(n, (customer, day, amount, currency))
                events.append(_event(n, *first[n]))
            await store.record(events)
            recorded += events
        await _check(store, recorded)
    finally:
        await store.close()


async def raw_reset(store: BillingStore) -> None:
    """Empty the tables this test's examples fill (its own store: a fresh file or schema)."""
    for table in ("usage_events", "invoice_lines", "revenue_ledger", "revenue_daily",
                  "spend_monthly", "billing_periods"):  # fmt: skip
        await _exec(store, f"DELETE FROM {table}")


async def _exec(store: BillingStore, sql: str) -> None:
    """Run `sql` on the store's own connection, past the immutability triggers (tests only)."""
    if isinstance(store, SqliteBillingStore):
        await store._conn.execute("DROP TRIGGER IF EXISTS usage_events_no_delete")
        await store._conn.execute(sql)
        return
    assert isinstance(store, PostgresBillingStore)
    async with store._pool.acquire() as conn:
        await conn.execute("SET session_replication_role = replica")  # no immutability trigger
        await conn.execute(sql)
        await conn.execute("SET session_replication_role = DEFAULT")


async def test_the_migration_fills_the_totals_from_an_older_ledger(
    store_target: StoreTarget,
) -> None:
    events = [_event(n, CUSTOMERS[n % 4], n % 7, 10**9 * n + n) for n in range(1, 15)]
    events.append(_event(20, "acme", 2, 10**9, "EUR"))
    old = await store_target.open()
    try:
        await old.record(events)
        # back to a store written before migration 2: its tables gone, the step not recorded
        for sql in ("DROP TABLE revenue_daily", "DROP TABLE spend_monthly",
                    "ALTER TABLE alert_log DROP COLUMN cause",
                    "ALTER TABLE alert_log DROP COLUMN at_value",
                    "DELETE FROM schema_migrations WHERE version = 2"):  # fmt: skip
            await _exec(old, sql)
    finally:
        await old.close()
    store = await store_target.open()  # applies migration 2 again, filled from the ledger
    try:
        await _check(store, events)
        later = _event(30, "globex", 3, 5)
        await store.record([later])  # and moved by every batch from then on
        await _check(store, [*events, later])
    finally:
        await store.close()
