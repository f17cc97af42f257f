"""Decision statistics: per-process counters, the per-second flush, the reader's math."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from gatekeeper.clock import ManualClock
from gatekeeper.stats import (
    DecisionStats,
    DenialsReader,
    StatsFlusher,
    StatsReader,
    outcome_class,
)
from gatekeeper.stats import reader as reader_module
from gatekeeper.store.keys import KeySpace
from tests.conftest import also_on_cluster
from tests.engine.harness import START, make_harness
from tests.notify.helpers import customers_policy, req

NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)
T = int(NOW.timestamp())
GROUP = "gatekeeper-billing"


def _reader(redis: Redis, keys: KeySpace, clock: ManualClock, **kw: int) -> StatsReader:
    return StatsReader(redis=redis, keys=keys, clock=clock, group=GROUP, **kw)


def _flusher(
    stats: DecisionStats, redis: Redis, keys: KeySpace, clock: ManualClock, **kw: int
) -> StatsFlusher:
    return StatsFlusher(stats=stats, redis=redis, keys=keys, clock=clock, **kw)


def test_recorder_counts_outcomes_customers_and_denials() -> None:
    stats = DecisionStats()
    for outcome, customer in [
        ("allowed", "a"),
        ("allowed", "a"),
        ("quota_exhausted", "a"),
        ("allowed_offline", "b"),
        ("invalid_credentials", None),
    ]:
        stats.record(outcome, customer)
    outcomes, customers, denied = stats.take()
    assert outcomes == {
        "allowed": 2,
        "quota_exhausted": 1,
        "allowed_offline": 1,
        "invalid_credentials": 1,
    }
    assert customers == {"a": 3, "b": 1}
    assert denied == {"a": 1}
    assert stats.take() == ({}, {}, {})  # taking resets


def test_outcome_classes() -> None:
    assert [
        outcome_class(o)
        for o in (
            "allowed",
            "quota_exhausted",
            "rate_limited",
            "spend_cap",
            "not_entitled",
            "missing_credentials",
            "unknown_customer",
            "store_unavailable",
            "something_new",
        )
    ] == [
        "allowed",
        "quota",
        "rate",
        "spend_cap",
        "not_entitled",
        "unauthenticated",
        "unauthenticated",
        "unavailable",
        "other",
    ]


@also_on_cluster()
async def test_two_processes_sum_into_one_view(redis: Redis, key_prefix: str) -> None:
    keys = KeySpace(prefix=key_prefix)
    clock = ManualClock(NOW)
    first, second = DecisionStats(), DecisionStats()
    for _ in range(7):
        first.record("allowed", "acme")
    first.record("rate_limited", "acme")
    for _ in range(3):
        second.record("allowed", "acme")
    second.record("allowed", "globex")
    second.record("spend_cap", "globex")
    second.record("missing_credentials", None)
    # both processes flush the second that just ended (T-1)
    assert await _flusher(first, redis, keys, clock).run_once() == 8
    assert await _flusher(second, redis, keys, clock).run_once() == 6
    assert 0 < await redis.ttl(keys.stats_second(T - 1)) <= 300

    snap = await _reader(redis, keys, clock, window_s=60, rate_window_s=10).snapshot()
    assert snap.seconds[-1] == T - 1 and len(snap.seconds) == 60
    assert snap.series["allowed"][-1] == 11
    assert snap.series["rate"][-1] == 1
    assert snap.series["spend_cap"][-1] == 1
    assert snap.series["unauthenticated"][-1] == 1
    assert sum(snap.series["allowed"][:-1]) == 0
    assert snap.rates == {"allowed": 1.1, "rate": 0.1, "spend_cap": 0.1, "unauthenticated": 0.1}
    assert snap.denials == {"rate": 1, "spend_cap": 1, "unauthenticated": 1}
    assert [(c.customer, c.decisions, c.denied) for c in snap.top_customers] == [
        ("acme", 11, 1),
        ("globex", 2, 1),
    ]
    body = snap.to_json(lambda alert: {"id": alert.id})
    assert body["total_rate"] == 1.4 and body["window_s"] == 60


async def test_reader_window_and_rates_follow_the_clock(redis: Redis, key_prefix: str) -> None:
    keys = KeySpace(prefix=key_prefix)
    clock = ManualClock(NOW)
    stats = DecisionStats()
    flusher = _flusher(stats, redis, keys, clock)
    # 2 decisions/s in each of the 20 seconds T-20 .. T-1, 100 in T-40 (outside the rate window)
    for s in range(T - 20, T):
        stats.record("allowed", "acme")
        stats.record("quota_exhausted", "acme")
        await flusher.run_once(second=s)
    for _ in range(100):
        stats.record("allowed", "old")
    await flusher.run_once(second=T - 40)

    reader = _reader(redis, keys, clock, window_s=30, rate_window_s=10)
    snap = await reader.snapshot()
    assert snap.seconds == tuple(range(T - 30, T))
    assert snap.rates == {"allowed": 1.0, "quota": 1.0}
    assert snap.denials == {"quota": 20}
    assert [c.customer for c in snap.top_customers] == ["acme"]  # "old" is outside the window

    # the same second is served from the cache; the next one is read again
    stats.record("allowed", "acme")
    await flusher.run_once(second=T)
    assert await reader.snapshot() is snap
    clock.advance(1)
    later = await reader.snapshot()
    assert later.seconds[-1] == T and later.series["allowed"][-1] == 1
    clock.advance(timedelta(seconds=60))  # everything has left the window
    assert (await reader.snapshot()).rates == {}


async def test_flush_keeps_only_the_busiest_customers(redis: Redis, key_prefix: str) -> None:
    keys = KeySpace(prefix=key_prefix)
    stats = DecisionStats()
    for i in range(10):
        for _ in range(i + 1):
            stats.record("allowed", f"c{i}")
    await _flusher(stats, redis, keys, ManualClock(NOW), top_customers=3).run_once()
    fields = await redis.hgetall(keys.stats_second(T - 1))
    assert {k.decode() for k in fields} == {"o:allowed", "c:c9", "c:c8", "c:c7"}
    assert int(fields[b"o:allowed"]) == 55  # outcome counts stay exact


async def test_flush_failure_is_counted_not_raised(key_prefix: str) -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    stats = DecisionStats()
    stats.record("allowed", "acme")
    flusher = _flusher(stats, dead, KeySpace(prefix=key_prefix), ManualClock(NOW))
    assert await flusher.run_once() == 0
    assert flusher.dropped == 1 and flusher.flushed == 0
    await dead.aclose()


@also_on_cluster()
async def test_run_flushes_every_second_and_stops(redis: Redis, key_prefix: str) -> None:
    from gatekeeper.clock import SystemClock

    keys = KeySpace(prefix=key_prefix)
    stats = DecisionStats()
    flusher = StatsFlusher(stats=stats, redis=redis, keys=keys, clock=SystemClock())
    task = asyncio.create_task(flusher.run())
    stats.record("allowed", "acme")
    async with asyncio.timeout(5):
        while flusher.flushed == 0:
            await asyncio.sleep(0.05)
    written = [k async for k in redis.scan_iter(match=keys.stats_second(0)[:-1] + "*")]
    assert len(written) == 1
    flusher.stop()
    stats.record("allowed", "acme")  # flushed on the way out
    async with asyncio.timeout(2):
        await task
    assert flusher.flushed == 2


@also_on_cluster()
async def test_stream_lag_of_the_billing_group(redis: Redis, key_prefix: str) -> None:
    keys = KeySpace(prefix=key_prefix, partitions=4)
    clock = ManualClock(NOW)
    stream = keys.usage_stream(1)
    for i in range(5):
        await redis.xadd(stream, {"n": str(i)})
    await redis.xgroup_create(stream, GROUP, id="0")
    await redis.xreadgroup(GROUP, "c1", {stream: ">"}, count=2)  # 2 pending, 3 not delivered
    await redis.xadd(keys.usage_stream(2), {"n": "x"})  # a partition without the group

    lag = (await _reader(redis, keys, clock).snapshot()).lag
    assert lag is not None
    assert (lag.group, lag.pending, lag.length, lag.streams_without_group) == (GROUP, 2, 6, 3)
    # Redis 7 gives the group's lag; 6.2 (the embedded Redis) does not, so gatekeeper counts
    # it (the operator page said "n/a (Redis < 7)" with the project's own Redis)
    assert lag.lag == 3 + 1 and not lag.lag_capped  # partition 2: no group, nothing delivered
    await redis.xgroup_create(keys.usage_stream(2), GROUP, id="$")
    clock.advance(1)
    lag = (await _reader(redis, keys, clock).snapshot()).lag
    assert lag is not None and lag.lag == 3
    await redis.xreadgroup(GROUP, "c1", {stream: ">"}, count=10)
    clock.advance(1)
    lag = (await _reader(redis, keys, clock).snapshot()).lag
    assert lag is not None and (lag.pending, lag.lag) == (5, 0)


async def test_a_counted_stream_lag_is_bounded(
    redis: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeySpace(prefix=key_prefix, partitions=2)
    stream = keys.usage_stream(0)
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for i in range(5):
        await redis.xadd(stream, {"n": str(i)})
    monkeypatch.setattr(reader_module, "LAG_COUNT_CAP", 3)
    version = (await redis.info("server"))["redis_version"]
    lag = (await _reader(redis, keys, ManualClock(NOW)).snapshot()).lag
    assert lag is not None
    if int(version.split(".")[0]) >= 7:  # Redis gave it: exact
        assert (lag.lag, lag.lag_capped) == (5, False)
    else:  # counted up to the cap: a lower bound, and said so
        assert (lag.lag, lag.lag_capped) == (3, True)


@also_on_cluster()
async def test_recent_alerts_from_real_decisions(redis: Redis, key_prefix: str) -> None:
    h = make_harness(redis, customers_policy(["acme", "globex"], limit=10), key_prefix)
    for _ in range(5):  # 50 % threshold
        await h.engine.decide(req("acme"))
    h.clock.advance(1)
    for _ in range(8):  # 50 % and 80 %
        await h.engine.decide(req("globex"))
    keys = h.store.keys
    reader = StatsReader(redis=redis, keys=keys, clock=h.clock, group=GROUP, alerts=2)
    alerts = (await reader.snapshot()).alerts
    assert [(a.customer, a.threshold) for a in alerts] == [("globex", 80), ("globex", 50)]
    mine = await reader.customer_alerts("acme")
    assert [(a.customer, a.kind, a.feature, a.threshold) for a in mine] == [
        ("acme", "threshold", "requests", 50)
    ]
    assert mine[0].time == START


@also_on_cluster()
async def test_every_customers_denials_by_reason_are_kept_per_utc_day(
    redis: Redis, key_prefix: str
) -> None:
    """Not only the busiest customers: every denied customer's reasons, summed over processes,
    in the day of the flushed second (UTC), kept two days; DenialsReader reads them back."""
    keys = KeySpace(prefix=key_prefix, partitions=4)
    clock = ManualClock(NOW)
    first, second = DecisionStats(), DecisionStats()
    for i in range(60):  # more customers than the top 50 the per-second hash keeps
        first.record("allowed", f"c{i}")
        first.record("allowed", f"c{i}")
    for _ in range(3):
        first.record("quota_exhausted", "small")
    first.record("rate_limited", "small")
    second.record("quota_exhausted", "small")
    second.record("not_entitled", "small")
    second.record("allowed", "small")
    assert await _flusher(first, redis, keys, clock, top_customers=50).run_once() == 124
    assert await _flusher(second, redis, keys, clock).run_once() == 3
    reader = DenialsReader(redis=redis, keys=keys)
    assert await reader.on("small", NOW) == {"quota": 4, "not_entitled": 1, "rate": 1}
    assert await reader.on("c0", NOW) == {}  # admitted only
    assert await reader.on("small", NOW + timedelta(days=1)) == {}  # another UTC day
    ttl = await redis.ttl(keys.customer_denials("small", NOW.date().isoformat()))
    assert 86_400 < ttl <= 2 * 86_400
    # a second just before midnight counts for its own day
    late = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    first.record("spend_cap", "small")
    await _flusher(first, redis, keys, clock).run_once(second=int(late.timestamp()))
    assert (await reader.on("small", late))["spend_cap"] == 1
    assert "spend_cap" not in await reader.on("small", late + timedelta(seconds=1))
