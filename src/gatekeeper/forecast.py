"""End-of-period usage and spend forecasts, and a daily anomaly check (pure: no I/O, no clock).

Model (explainable on a dashboard):

- rate: an EWMA (weight `alpha`) of the complete days' totals; days without a point after the
  first one count as 0.
- trend: the least-squares slope of the 7-day trailing means over the last 28 days (the
  7-day mean cancels a weekly cycle; with 4..13 days, of the raw days), soft-thresholded by
  `trend_z` standard errors so a slope that does not stand out from the noise counts as 0.
  The EWMA lags a trend by (1-alpha)/alpha days; the forecast adds that lag back.
- today: the partial day's pace (quantity / elapsed fraction) moves today's rate with weight
  alpha x elapsed fraction, so an early, noisy pace barely counts.
- projection = used so far + sum of the daily forecasts over the rest of the period
  (fractional days at both ends), never negative per day; `rate_per_day` is that sum divided
  by the remaining days.
- band: +/- z * sigma * sqrt(remaining days), sigma^2 an EWMA of the squared one-day-ahead
  errors of the rate; without two days of history sigma is taken as the rate itself.

The anomaly check compares today's pace with the median of recent complete days, in units of
a robust spread (1.4826 MAD, floored by Poisson noise and 5 % of the baseline, widened by the
counting noise of a partial day), and flags only with `min_history` days of history.
Arithmetic is float; results are rounded to ints.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

__all__ = [
    "AnomalyResult",
    "DailyPoint",
    "Forecast",
    "Outlook",
    "detect_anomaly",
    "enforcement",
    "forecast_spend",
    "forecast_usage",
    "outlook",
    "projected_overage",
]

_DAY_S = 86_400.0
_TREND_WINDOW = 28
_MIN_PACE_FRACTION = 1 / 24  # a pace is never extrapolated from less than an hour


@dataclass(frozen=True, slots=True)
class DailyPoint:
    """The total of one UTC day: units of a feature, or nano-units of spend."""

    day: date
    quantity: int


@dataclass(frozen=True, slots=True)
class Forecast:
    """Projected end-of-period total (same unit as the points) with a band low..high."""

    projected: int
    low: int
    high: int
    rate_per_day: float
    method: str
    explanation: str


@dataclass(frozen=True, slots=True)
class AnomalyResult:
    """score: robust z-score of today's pace vs `baseline` (per day); flag when it is extreme."""

    flag: bool
    score: float
    baseline: float
    today_rate: float
    reason: str


def _aware(name: str, when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"{name} must be an aware datetime (UTC)")
    return when.astimezone(UTC)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _by_day(points: Iterable[DailyPoint]) -> dict[date, int]:
    days: dict[date, int] = {}
    for p in points:
        if p.day in days:
            raise ValueError(f"two points for {p.day.isoformat()}: one total per day")
        days[p.day] = p.quantity
    return days


def _history(days: dict[date, int], today: date) -> list[float]:
    """Complete days before `today`, from the first point on, gaps as 0 (oldest first)."""
    past = [d for d in days if d < today]
    if not past:
        return []
    first = min(past)
    return [float(days.get(first + timedelta(i), 0)) for i in range((today - first).days)]


def _ols(ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope per step and its standard error."""
    n = len(ys)
    tbar, ybar = (n - 1) / 2, sum(ys) / n
    sxx = sum((t - tbar) ** 2 for t in range(n))
    slope = sum((t - tbar) * (y - ybar) for t, y in enumerate(ys)) / sxx
    resid = sum((y - ybar - slope * (t - tbar)) ** 2 for t, y in enumerate(ys))
    return slope, math.sqrt(resid / max(1, n - 2) / sxx)


def _trend(history: Sequence[float], trend_z: float) -> float:
    n = len(history)
    if n >= 14:
        tail = history[-(_TREND_WINDOW + 6) :]
        means = [sum(tail[i - 6 : i + 1]) / 7 for i in range(6, len(tail))]
        slope, se = _ols(means)
        se *= math.sqrt(7)  # overlapping means are correlated: widen the error
    elif n >= 4:
        slope, se = _ols(history)
    else:
        return 0.0
    return math.copysign(max(0.0, abs(slope) - trend_z * se), slope)


def _forecast(
    points: Iterable[DailyPoint],
    *,
    period_start: datetime,
    period_end: datetime,
    now: datetime,
    alpha: float,
    z: float,
    trend_z: float,
    unit: str,
) -> Forecast:
    start, end = _aware("period_start", period_start), _aware("period_end", period_end)
    now = min(max(_aware("now", now), start), end)
    if end <= start:
        raise ValueError("period_end must be after period_start")
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if z < 0 or trend_z < 0:
        raise ValueError("z and trend_z must be >= 0")
    days = _by_day(points)
    today = now.date()
    used = sum(q for d, q in days.items() if start.date() <= d <= today)
    elapsed = (now - _midnight(today)).total_seconds() / _DAY_S
    history = _history(days, today)
    q_today = float(days.get(today, 0))

    if history:
        level, var = history[0], 0.0
        for x in history[1:]:
            err = x - level
            var = (1 - alpha) * (var + alpha * err * err)
            level += alpha * err
        trend = _trend(history, trend_z)
        lag = (1 - alpha) / alpha * (1 - (1 - alpha) ** (len(history) - 1))
        sigma = math.sqrt(var) if len(history) >= 2 else abs(level)
        method = "ewma+trend" if trend else "ewma"
    else:
        pace = q_today / max(elapsed, _MIN_PACE_FRACTION) if elapsed > 0 else 0.0
        level, trend, lag, sigma = pace, 0.0, 0.0, pace
        method = "pace" if pace else "no-history"
    base_today = level + (lag + 1) * trend
    adjust = 0.0
    if history and elapsed > 0:
        pace = q_today / max(elapsed, _MIN_PACE_FRACTION)
        adjust = alpha * elapsed * (pace - base_today)

    future = 0.0
    day, h = today, 1
    while _midnight(day) < end:
        lo, hi = max(now, _midnight(day)), min(end, _midnight(day + timedelta(1)))
        share = max(0.0, (hi - lo).total_seconds() / _DAY_S)
        future += share * max(0.0, level + (lag + h) * trend + adjust)
        day, h = day + timedelta(1), h + 1
    remaining = (end - now).total_seconds() / _DAY_S
    band = z * sigma * math.sqrt(remaining)
    rate = future / remaining if remaining > 0 else max(0.0, base_today + adjust)
    projected = used + round(future)
    low = max(used, math.floor(used + future - band))
    high = max(projected, math.ceil(used + future + band))
    explanation = (
        f"{used} {unit} used so far + {rate:.6g} {unit}/day x {remaining:.2f} remaining days "
        f"(EWMA alpha={alpha} of {len(history)} complete days = {level:.6g}/day; "
        f"trend {trend:+.6g}/day per day; today's pace weighted {alpha * elapsed:.3f}); "
        f"band +/- {z} x sigma {sigma:.6g} x sqrt({remaining:.2f})"
    )
    return Forecast(projected, min(low, projected), high, rate, method, explanation)


def forecast_usage(
    points: Iterable[DailyPoint],
    *,
    period_start: datetime,
    period_end: datetime,
    now: datetime,
    alpha: float = 0.2,
    z: float = 1.96,
    trend_z: float = 2.0,
) -> Forecast:
    """Projected units of one feature at `period_end` (see the module docstring for the model).

    `points` are daily unit totals (UTC days; history before `period_start` improves the rate,
    only days from period_start's date to `now`'s count as used). `now` is clamped into the
    period. Raises ValueError for naive datetimes, an empty period, two points on one day, or
    alpha outside (0, 1].
    """
    return _forecast(
        points,
        period_start=period_start,
        period_end=period_end,
        now=now,
        alpha=alpha,
        z=z,
        trend_z=trend_z,
        unit="units",
    )


def forecast_spend(
    points: Iterable[DailyPoint],
    *,
    period_start: datetime,
    period_end: datetime,
    now: datetime,
    alpha: float = 0.2,
    z: float = 1.96,
    trend_z: float = 2.0,
) -> Forecast:
    """Projected spend at `period_end` in nano-units (points are daily nano-unit totals).

    Same model and errors as `forecast_usage`; the integers are nano-units of the currency.
    """
    return _forecast(
        points,
        period_start=period_start,
        period_end=period_end,
        now=now,
        alpha=alpha,
        z=z,
        trend_z=trend_z,
        unit="nano",
    )


def projected_overage(forecast: Forecast, limit: int | None) -> int | None:
    """Units (or nano-units) by which the projection exceeds `limit`; None if it does not
    (or there is no limit)."""
    if limit is None or forecast.projected <= limit:
        return None
    return forecast.projected - limit


@dataclass(frozen=True, slots=True)
class Outlook:
    """What the projection means for the customer, given how the limit is enforced.

    `verdict`: `no_limit`; `within_limit`; `blocked` (the projection reaches the point where
    requests are refused: a hard limit, a soft limit's allowance, a blocking cap — the customer
    will be cut off, not billed more); `over_limit` (past a limit that does not refuse: billed
    as overage, or a cap that only alerts). `reached_at`: when the projection crosses the
    figure the verdict is about (the refusal point, else the limit), `now` if already there,
    None when it does not within the period or no rate is known."""

    verdict: str
    reached_at: datetime | None


def outlook(
    forecast: Forecast,
    *,
    used: int,
    limit: int | None,
    refused_at: int | None,
    now: datetime,
    period_end: datetime,
) -> Outlook:
    """`limit`: the limit shown (a quota's limit, a cap's amount); `refused_at`: the count from
    which requests are refused (a hard limit's ceiling, a soft limit's limit + allowance, a
    blocking cap's amount), None when nothing is refused."""
    if limit is None:
        return Outlook("no_limit", None)
    if refused_at is not None and max(used, forecast.projected) >= refused_at:
        return Outlook("blocked", _crossing(refused_at, used, forecast, now, period_end))
    if max(used, forecast.projected) > limit:
        return Outlook("over_limit", _crossing(limit, used, forecast, now, period_end))
    return Outlook("within_limit", None)


def enforcement(limit: int | None, *, refuses: bool, otherwise: str) -> str | None:
    """How reaching a limit is enforced, as the forecast view words it: None without a limit,
    "block" when reaching it refuses requests, else `otherwise` ("overage" for a quota billed
    past its limit, "alert" for a spend cap that only warns)."""
    if limit is None:
        return None
    return "block" if refuses else otherwise


def _crossing(
    target: int, used: int, forecast: Forecast, now: datetime, period_end: datetime
) -> datetime | None:
    if used >= target:
        return now
    if forecast.rate_per_day <= 0:
        return None
    days = (target - used) / forecast.rate_per_day
    if days > (period_end - now).total_seconds() / _DAY_S:
        return None  # not within the period (and no timedelta past its range)
    return min(period_end, now + timedelta(days=days))


def detect_anomaly(
    points: Iterable[DailyPoint],
    *,
    now: datetime,
    k: float = 5.5,
    min_history: int = 7,
    window: int = 28,
    two_sided: bool = False,
) -> AnomalyResult:
    """Is today's pace far from the recent baseline?

    baseline: median of the last `window` complete days (gaps as 0); spread: 1.4826 x MAD,
    at least sqrt(baseline), 5 % of the baseline and 1. today_rate = today's total / elapsed
    fraction of the day (at least an hour). score = (today_rate - baseline) / spread_today,
    spread_today^2 = spread^2 + baseline x (1 - elapsed) / elapsed (the counting noise of a
    partial day's pace, Poisson in the unit; bursty units are only guarded by the one-hour
    floor and by k). Flags when
    score >= k (or |score| >= k with `two_sided`) and at least `min_history` complete days
    exist. Raises ValueError for a naive `now`, two points on one day, k <= 0 or window < 1.
    """
    if k <= 0 or window < 1:
        raise ValueError("k must be > 0 and window >= 1")
    now = _aware("now", now)
    days = _by_day(points)
    today = now.date()
    history = _history(days, today)[-window:]
    elapsed = max((now - _midnight(today)).total_seconds() / _DAY_S, _MIN_PACE_FRACTION)
    today_rate = days.get(today, 0) / elapsed
    if len(history) < max(1, min_history):
        return AnomalyResult(
            False, 0.0, 0.0, today_rate, f"{len(history)} days of history < {min_history}"
        )
    baseline = statistics.median(history)
    mad = statistics.median(abs(x - baseline) for x in history)
    spread = max(1.4826 * mad, math.sqrt(abs(baseline)), 0.05 * abs(baseline), 1.0)
    # a partial day adds counting noise: a Poisson count over `elapsed` days, as a rate
    spread_today = math.sqrt(spread * spread + abs(baseline) * (1 - elapsed) / elapsed)
    score = (today_rate - baseline) / spread_today
    flag = score >= k or (two_sided and score <= -k)
    verdict = "anomalous" if flag else "normal"
    reason = (
        f"{verdict}: today's pace {today_rate:.6g}/day vs median {baseline:.6g}/day of "
        f"{len(history)} days, spread {spread_today:.6g}, score {score:.2f} (threshold {k})"
    )
    return AnomalyResult(flag, score, baseline, today_rate, reason)
