"""Forecasts and anomaly flags on synthetic series whose truth is known."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.forecast import (
    DailyPoint,
    Forecast,
    Outlook,
    detect_anomaly,
    enforcement,
    forecast_spend,
    forecast_usage,
    outlook,
    projected_overage,
)

PERIOD_START = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 12, 1, tzinfo=UTC)  # 30 days
PRE = 28  # days of history before the period (a customer with a previous month)

Generator = Callable[[int, random.Random], int]  # day index from the first day -> total


def constant(d: int, rng: random.Random) -> int:
    return 1_000


def linear(d: int, rng: random.Random) -> int:
    return 100 + 10 * d


def weekly_noise(phase: int) -> Generator:
    def gen(d: int, rng: random.Random) -> int:
        cycle = 1 + 0.15 * math.sin(2 * math.pi * (d + phase) / 7)
        return round(1_000 * cycle * math.exp(rng.gauss(0, 0.05)))

    return gen


def weekly_growth(phase: int) -> Generator:
    def gen(d: int, rng: random.Random) -> int:
        cycle = 1 + 0.15 * math.sin(2 * math.pi * (d + phase) / 7)
        return round((1_000 + 15 * d) * cycle * math.exp(rng.gauss(0, 0.05)))

    return gen


def series(gen: Generator, seed: int = 0, pre: int = PRE) -> list[DailyPoint]:
    """The whole synthetic history: `pre` days before the period, then the 30 period days."""
    rng = random.Random(seed)
    first = PERIOD_START.date() - timedelta(pre)
    return [DailyPoint(first + timedelta(i), gen(i, rng)) for i in range(pre + 30)]


def observe(points: list[DailyPoint], now: datetime) -> tuple[list[DailyPoint], int]:
    """What is known at `now` (today's total pro rata), and the true end-of-period total."""
    truth = sum(p.quantity for p in points if p.day >= PERIOD_START.date())
    today = now.date()
    part = (now - datetime.combine(today, datetime.min.time(), tzinfo=UTC)) / timedelta(days=1)
    seen = [p for p in points if p.day < today]
    seen += [DailyPoint(p.day, round(p.quantity * part)) for p in points if p.day == today]
    return seen, truth


def at(day: int, hour: int = 0) -> datetime:
    return PERIOD_START + timedelta(days=day, hours=hour)


def fc(points: list[DailyPoint], now: datetime, **kw: float) -> Forecast:
    return forecast_usage(points, period_start=PERIOD_START, period_end=PERIOD_END, now=now, **kw)


def assert_within(forecast: Forecast, truth: int, tolerance: float = 0.05) -> None:
    assert abs(forecast.projected - truth) <= tolerance * truth, (forecast, truth)


# --- accuracy ----------------------------------------------------------------------------


@pytest.mark.parametrize("now", [at(10), at(15, 12), at(20, 6), at(29, 18)])
@pytest.mark.parametrize("pre", [0, PRE])
def test_constant_rate_is_projected_exactly(now: datetime, pre: int) -> None:
    seen, truth = observe(series(constant, pre=pre), now)
    f = fc(seen, now)
    assert_within(f, truth, 0.001)
    assert f.rate_per_day == pytest.approx(1_000, rel=1e-3) and f.method == "ewma"
    assert f.low <= truth <= f.high


@pytest.mark.parametrize("now", [at(10), at(15, 12), at(20, 6)])
@pytest.mark.parametrize("pre", [0, PRE])
def test_linear_growth_is_projected_within_5_percent(now: datetime, pre: int) -> None:
    seen, truth = observe(series(linear, pre=pre), now)
    f = fc(seen, now)
    assert_within(f, truth)
    assert f.method == "ewma+trend" and "trend +10/day per day" in f.explanation


@pytest.mark.parametrize("seed", range(40))
def test_weekly_noise_is_projected_within_5_percent(seed: int) -> None:
    for gen in (weekly_noise(seed % 7), weekly_growth(seed % 7)):
        points = series(gen, seed)
        for now in (at(15, 9), at(20, 15)):
            seen, truth = observe(points, now)
            assert_within(fc(seen, now), truth)


def test_spend_forecast_works_on_nano_units() -> None:
    nano = [DailyPoint(p.day, p.quantity * 1_500_003) for p in series(linear)]
    now = at(15, 12)
    seen, truth = observe(nano, now)
    f = forecast_spend(seen, period_start=PERIOD_START, period_end=PERIOD_END, now=now)
    assert isinstance(f.projected, int) and isinstance(f.low, int) and isinstance(f.high, int)
    assert_within(f, truth)
    assert "nano" in f.explanation


def test_new_customer_uses_todays_pace_and_a_wide_band() -> None:
    now = at(3, 12)
    f = fc([DailyPoint(now.date(), 500)], now)
    assert f.method == "pace" and f.rate_per_day == pytest.approx(1_000)
    assert f.projected == 500 + round(1_000 * 26.5)
    assert f.low < f.projected < f.high
    empty = fc([], now)
    assert (empty.projected, empty.low, empty.high, empty.method) == (0, 0, 0, "no-history")


def test_period_end_reached_projects_what_was_used() -> None:
    seen, truth = observe(series(constant), PERIOD_END)
    f = fc(seen, PERIOD_END)
    assert f.projected == f.low == f.high == truth


def test_gaps_count_as_zero_days() -> None:
    now = at(20)
    sparse = [p for p in series(constant) if p.day.day % 2 == 0 and p.day < now.date()]
    assert fc(sparse, now).rate_per_day == pytest.approx(500, rel=0.15)


def test_explanation_states_the_arithmetic() -> None:
    seen, _ = observe(series(linear), at(15, 12))
    f = fc(seen, at(15, 12))
    for needle in ("used so far", "remaining days", "EWMA alpha=0.2", "trend", "band"):
        assert needle in f.explanation


def test_projected_overage() -> None:
    f = Forecast(1_200, 1_100, 1_300, 40.0, "ewma", "")
    assert projected_overage(f, 1_000) == 200
    assert projected_overage(f, 1_200) is None
    assert projected_overage(f, None) is None


def test_bad_input_is_rejected() -> None:
    day = PERIOD_START.date()
    with pytest.raises(ValueError, match="one total per day"):
        fc([DailyPoint(day, 1), DailyPoint(day, 2)], at(5))
    with pytest.raises(ValueError, match="aware"):
        fc([], datetime(2026, 11, 5))
    with pytest.raises(ValueError, match="alpha"):
        fc([], at(5), alpha=0)
    with pytest.raises(ValueError, match="after"):
        forecast_usage([], period_start=PERIOD_END, period_end=PERIOD_START, now=at(5))


# --- anomalies ---------------------------------------------------------------------------


def noisy_history(seed: int, days: int = 28) -> tuple[list[DailyPoint], Generator]:
    gen = weekly_noise(seed % 7) if seed % 2 else weekly_growth(seed % 7)
    return series(gen, seed, pre=0)[:days], gen


HOURS = [1, 3, 9, 14, 23]


def partial(day_total: int, hour: int, rng: random.Random) -> int:
    """Today's total so far: pro rata with 10 % intraday noise."""
    return round(day_total * hour / 24 * math.exp(rng.gauss(0, 0.1)))


@pytest.mark.parametrize("hour", HOURS)
def test_no_false_positives_on_noise(hour: int) -> None:
    flagged = []
    for seed in range(300):
        history, gen = noisy_history(seed)
        now = at(28, hour)
        rng = random.Random(10_000 + seed)
        today = partial(gen(28, rng), hour, rng)
        result = detect_anomaly([*history, DailyPoint(now.date(), today)], now=now)
        if result.flag:
            flagged.append((seed, result))
    assert flagged == []


@pytest.mark.parametrize("hour", HOURS)
def test_planted_spike_is_always_caught(hour: int) -> None:
    for seed in range(300):
        history, gen = noisy_history(seed)
        now = at(28, hour)
        rng = random.Random(10_000 + seed)
        spike = round(3 * gen(28, rng) * hour / 24)  # three times the usual pace
        result = detect_anomaly([*history, DailyPoint(now.date(), spike)], now=now)
        assert result.flag, (seed, result)
        assert result.today_rate > 2 * result.baseline and "anomalous" in result.reason


def test_new_customer_is_not_flagged() -> None:
    now = at(3, 12)
    history = [DailyPoint(at(d).date(), 10) for d in range(3)]
    result = detect_anomaly([*history, DailyPoint(now.date(), 100_000)], now=now)
    assert not result.flag and "history" in result.reason


def test_drop_is_flagged_only_when_two_sided() -> None:
    history, _ = noisy_history(1)
    now = at(28, 20)
    points = [*history, DailyPoint(now.date(), 0)]
    assert not detect_anomaly(points, now=now).flag
    assert detect_anomaly(points, now=now, two_sided=True).flag


def test_constant_history_with_tiny_wiggle_is_not_flagged() -> None:
    history = [DailyPoint(at(d).date(), 100) for d in range(28)]
    now = at(28, 23)
    assert not detect_anomaly([*history, DailyPoint(now.date(), 110)], now=now).flag


# --- properties --------------------------------------------------------------------------

quantities = st.lists(st.integers(0, 10**6), min_size=0, max_size=60)
moments = st.integers(0, 30 * 24 * 60 - 1).map(lambda m: PERIOD_START + timedelta(minutes=m))


def dense(values: list[int], now: datetime) -> list[DailyPoint]:
    """`values` as the days ending today (the last value is today's partial total)."""
    today = now.date()
    return [DailyPoint(today - timedelta(len(values) - 1 - i), q) for i, q in enumerate(values)]


def used(points: list[DailyPoint], now: datetime) -> int:
    return sum(p.quantity for p in points if PERIOD_START.date() <= p.day <= now.date())


@settings(max_examples=300, deadline=None)
@given(quantities, moments, st.floats(0.05, 1.0))
def test_band_contains_projection_which_covers_usage(
    values: list[int], now: datetime, alpha: float
) -> None:
    points = dense(values, now)
    f = fc(points, now, alpha=alpha)
    assert f.low <= f.projected <= f.high
    assert f.projected >= used(points, now) and f.low >= used(points, now)
    assert f.rate_per_day >= 0


@settings(max_examples=200, deadline=None)
@given(quantities, moments, st.integers(2, 10))
def test_projection_is_monotone_in_the_rate(values: list[int], now: datetime, c: int) -> None:
    base = fc(dense(values, now), now)
    scaled = fc(dense([q * c for q in values], now), now)
    assert scaled.projected >= base.projected
    assert scaled.rate_per_day >= base.rate_per_day - 1e-6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=60), moments, st.integers(1, 1000))
def test_a_higher_daily_rate_never_lowers_the_projection(
    values: list[int], now: datetime, extra: int
) -> None:
    base = fc(dense(values, now), now)
    higher = fc(dense([q + extra for q in values], now), now)
    assert higher.projected >= base.projected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=0, max_size=40), moments)
def test_anomaly_needs_history(values: list[int], now: datetime) -> None:
    result = detect_anomaly(dense(values, now), now=now, min_history=7)
    if len(values) - 1 < 7:
        assert not result.flag


def test_dates_are_utc_days() -> None:
    assert DailyPoint(date(2026, 11, 1), 5).day.isoformat() == "2026-11-01"


def _fc(projected: int, rate: float) -> Forecast:
    return Forecast(projected, projected, projected, rate, "ewma", "")


_NOW = datetime(2026, 12, 10, 12, tzinfo=UTC)
_END = datetime(2027, 1, 1, tzinfo=UTC)


def test_the_outlook_follows_how_the_limit_is_enforced() -> None:
    """A hard limit or a blocking cap: 'blocked' at the refusal point, with when; a soft limit
    or an alert-only cap: 'over_limit' from the limit on; under it: 'within_limit'."""
    hard = outlook(_fc(250, 10.0), used=40, limit=50, refused_at=50, now=_NOW, period_end=_END)
    assert hard == Outlook("blocked", _NOW + timedelta(days=1))
    graced = outlook(_fc(250, 10.0), used=40, limit=50, refused_at=60, now=_NOW, period_end=_END)
    assert graced == Outlook("blocked", _NOW + timedelta(days=2))
    soft = outlook(_fc(250, 10.0), used=40, limit=50, refused_at=None, now=_NOW, period_end=_END)
    assert soft == Outlook("over_limit", _NOW + timedelta(days=1))
    within = outlook(_fc(45, 1.0), used=40, limit=50, refused_at=50, now=_NOW, period_end=_END)
    assert within == Outlook("within_limit", None)
    assert outlook(_fc(9, 1.0), used=9, limit=None, refused_at=None, now=_NOW, period_end=_END) == (
        Outlook("no_limit", None)
    )
    cut_off = outlook(_fc(50, 0.0), used=50, limit=50, refused_at=50, now=_NOW, period_end=_END)
    assert cut_off == Outlook("blocked", _NOW)  # already there: blocked now


@given(
    used=st.integers(0, 10**6),
    extra=st.integers(0, 10**6),
    rate=st.floats(0, 10**5, allow_nan=False),
    limit=st.integers(1, 10**6),
    blocks=st.booleans(),
)
def test_an_outlook_is_never_over_a_limit_that_refuses(
    used: int, extra: int, rate: float, limit: int, blocks: bool
) -> None:
    got = outlook(
        _fc(used + extra, rate),
        used=used,
        limit=limit,
        refused_at=limit if blocks else None,
        now=_NOW,
        period_end=_END,
    )
    projected_over = used + extra > limit or used > limit
    assert (got.verdict == "over_limit") == (projected_over and not blocks)
    assert (got.verdict == "blocked") == (blocks and used + extra >= limit)
    if got.reached_at is not None:
        assert _NOW <= got.reached_at <= _END


@pytest.mark.parametrize(
    ("limit", "refuses", "otherwise", "said"),
    [
        (None, True, "overage", None),  # no limit: nothing to enforce
        (100, True, "overage", "block"),  # a hard quota
        (100, False, "overage", "overage"),  # a soft quota, billed past its limit
        (100, False, "alert", "alert"),  # a spend cap that only warns
        (0, True, "alert", "block"),  # a cap of zero still blocks
    ],
)
def test_enforcement_is_worded_by_what_reaching_the_limit_does(
    limit: int | None, refuses: bool, otherwise: str, said: str | None
) -> None:
    assert enforcement(limit, refuses=refuses, otherwise=otherwise) == said
