"""Both billing stores (SQLite, PostgreSQL) against the same suite, fed with real engine events."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest
from redis.asyncio import Redis

from gatekeeper.billing import BillingStore, LineKind, LineStatus
from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.events import AlertEvent
from tests.billing.stores import StoreTarget, raw
from tests.engine.harness import START, make_harness
from tests.engine.policies import metered, plan, policy
from tests.pipeline.support import billed_events, harness

NOV15 = date(2026, 11, 15)  # alpha's billing period containing START (billing day 15)
DEC15 = date(2026, 12, 15)


async def decide(h, customer: str, *meters: tuple[str, int], reserve: bool = False):  # type: ignore[no-untyped-def]
    d = await h.engine.decide(
        DecisionRequest(customer, meters=tuple(MeterRequest(f, q, reserve) for f, q in meters))
    )
    assert d.allowed
    return d


async def test_migrations_are_versioned_and_applied_once(store_target: StoreTarget) -> None:
    first = await store_target.open()
    await first.close()
    again = await store_target.open()
    try:
        assert await again.migrate() == []  # type: ignore[attr-defined]
        rows = await raw(again, "SELECT version, name FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == [1, 2]
    finally:
        await again.close()


async def test_record_is_idempotent_and_lines_round_once(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    for _ in range(3):
        await decide(h, "alpha", ("requests", 1), ("images", 1))
    events = await billed_events(redis, key_prefix)
    assert len(events) == 6
    first = await store.record(events)
    assert (first.inserted, first.duplicates) == (6, 0)
    again = await store.record([*events, *events[:2]])
    assert (again.inserted, again.duplicates) == (0, 8)
    lines = {ln.feature: ln for ln in await store.invoice_lines("alpha", NOV15)}
    req, img = lines["requests"], lines["images"]
    # 3 x 0.004 = 0.012 -> 1 cent on the line (rounding each event would give 0)
    assert (req.event_count, req.quantity, req.amount_nano, req.amount_minor) == (
        3, 3, 12_000_000, 1,
    )  # fmt: skip
    # 3 x 0.015 = 0.045 -> 4 cents: half-even, once
    assert (img.amount_nano, img.amount_minor) == (45_000_000, 4)
    assert req.kind is LineKind.USAGE and req.status is LineStatus.OPEN
    assert (req.period_start, req.period_end, req.currency) == (NOV15, DEC15, "USD")
    assert await store.event_count() == 6


async def test_stored_events_keep_every_field(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    d = await decide(h, "beta", ("tokens", 3000), reserve=True)
    h.clock.advance(0.123457)
    await h.engine.settle("beta", d.decision_id, {"tokens": 1200}, request_id="r-9")
    events = await billed_events(redis, key_prefix)
    await store.record(events)
    stored = await store.invoice_events("beta", date(2026, 11, 1))
    assert [s.event for s in stored] == [b.event for b in events]
    assert stored[1].event.estimate == 3000 and stored[1].event.actual == 1200
    assert stored[1].event.amount_nano < 0  # the refund: a reversing event, never an UPDATE
    assert {s.stream_id for s in stored} == {b.stream_id for b in events}
    line = (await store.invoice_lines("beta", date(2026, 11, 1)))[0]
    assert line.quantity == 1200 and line.amount_nano == sum(b.event.amount_nano for b in events)


async def test_usage_events_are_immutable(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await decide(h, "alpha", ("requests", 1))
    await store.record(await billed_events(redis, key_prefix))
    with pytest.raises(Exception, match="immutable"):
        await raw(store, "UPDATE usage_events SET quantity = 99")
    with pytest.raises(Exception, match="immutable"):
        await raw(store, "DELETE FROM usage_events")


async def test_close_period_freezes_lines_and_bills_late_events_in_next_open_period(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await decide(h, "alpha", ("requests", 2))
    await store.record(await billed_events(redis, key_prefix))
    assert await store.close_period("alpha", NOV15, at=START) == 1
    before = await store.invoice_lines("alpha", NOV15)
    assert [ln.status for ln in before] == [LineStatus.CLOSED]
    with pytest.raises(Exception, match="closed"):
        await raw(store, "UPDATE invoice_lines SET amount_nano = 0")
    # an event of the closed period arrives late: billed on a `late` line of the next period
    await decide(h, "alpha", ("requests", 5))
    result = await store.record(await billed_events(redis, key_prefix))
    assert result.inserted == 1
    assert await store.invoice_lines("alpha", NOV15) == before  # frozen
    late = await store.invoice_lines("alpha", DEC15)
    assert [(ln.kind, ln.quantity, ln.amount_nano, ln.status) for ln in late] == [
        (LineKind.LATE, 5, 20_000_000, LineStatus.OPEN)
    ]
    (event,) = await store.invoice_events("alpha", DEC15)
    assert (event.period_start, event.invoice_period_start) == (NOV15, DEC15)
    # the next period closes too: the following open one takes later late events
    assert await store.close_period("alpha", DEC15, at=START) == 1
    await decide(h, "alpha", ("requests", 1))
    await store.record(await billed_events(redis, key_prefix))
    (jan,) = await store.invoice_lines("alpha", date(2027, 1, 15))
    assert (jan.kind, jan.quantity) == (LineKind.LATE, 1)
    # closing an empty period still freezes it; other customers are untouched
    assert await store.close_period("beta", date(2026, 11, 1), at=START) == 0


async def test_revenue_is_recognised_per_day_and_sums_to_the_period_total(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    per_day: dict[date, int] = {}
    for day in range(5):  # Nov 24..28, several decisions a day
        for q in (1, 2, 3):
            d = await decide(h, "alpha", ("requests", q), ("tokens", 700 * q))
            key = h.clock.now().date()
            per_day[key] = per_day.get(key, 0) + d.cost_nano
        h.clock.advance(timedelta(days=1, hours=day))
    await store.record(await billed_events(redis, key_prefix))
    rows = await store.revenue("alpha", NOV15, DEC15 - timedelta(days=1))
    recognised: dict[date, int] = {}
    for r in rows:
        recognised[r.day] = recognised.get(r.day, 0) + r.amount_nano
    assert recognised == per_day
    lines = await store.invoice_lines("alpha", NOV15)
    assert sum(recognised.values()) == sum(ln.amount_nano for ln in lines) == sum(per_day.values())


async def test_concurrent_duplicate_batches_count_once(
    store_target: StoreTarget, store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    for _ in range(50):
        await decide(h, "gamma", ("requests", 1), ("tokens", 100))
    events = await billed_events(redis, key_prefix)
    other = await store_target.open()
    try:
        results = await asyncio.gather(
            store.record(events), other.record(list(reversed(events))), store.record(events[:10])
        )
    finally:
        await other.close()
    assert sum(r.inserted for r in results) == 100
    lines = await store.invoice_lines("gamma", date(2026, 10, 31))
    assert {ln.feature: ln.event_count for ln in lines} == {"requests": 50, "tokens": 50}
    assert await store.event_count() == 100


async def test_alert_log_insert_is_idempotent_and_marks_delivery(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = make_harness(redis, policy(plan("p", metered("tokens", 100, thresholds=(50, 100)))),
                     key_prefix)  # fmt: skip
    await h.engine.decide(DecisionRequest("cust", meters=(MeterRequest("tokens", 100),)))
    alerts = [AlertEvent.from_fields(f) for _, f in await redis.xrange(h.alert_stream())]
    assert len(alerts) == 2
    assert await store.insert_alert(alerts[0], delivered_at=None)
    assert not await store.insert_alert(alerts[0], delivered_at=START)
    assert await store.insert_alert(alerts[1], delivered_at=START)
    assert await store.mark_alert_delivered(alerts[0].id, at=START)
    assert not await store.mark_alert_delivered(alerts[0].id, at=START)
    rows = await raw(
        store, 'SELECT id, threshold, "limit", delivered_at FROM alert_log ORDER BY id'
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [(a.id, a.threshold, 100) for a in alerts]
    assert all(r[3] is not None for r in rows)
