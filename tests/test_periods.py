from datetime import UTC, datetime

import pytest

from gatekeeper.model import Anchor, Period
from gatekeeper.periods import billing_window, window_for


def dt(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "period", "start", "end"),
    [
        (
            dt(2026, 11, 24, 12, 34, 56),
            Period.MINUTE,
            dt(2026, 11, 24, 12, 34),
            dt(2026, 11, 24, 12, 35),
        ),
        (dt(2026, 11, 24, 12, 34, 56), Period.HOUR, dt(2026, 11, 24, 12), dt(2026, 11, 24, 13)),
        (dt(2026, 12, 31, 23, 59, 59), Period.DAY, dt(2026, 12, 31), dt(2027, 1, 1)),
        (dt(2026, 12, 31, 23, 59, 59), Period.MONTH, dt(2026, 12, 1), dt(2027, 1, 1)),
        (dt(2028, 2, 29, 0, 0, 0), Period.MONTH, dt(2028, 2, 1), dt(2028, 3, 1)),
    ],
)
def test_calendar_windows(now: datetime, period: Period, start: datetime, end: datetime) -> None:
    w = window_for(now, period)
    assert (w.start, w.end) == (start, end)
    assert w.contains(now) and not w.contains(end)


@pytest.mark.parametrize(
    ("now", "day", "start", "end"),
    [
        (dt(2026, 11, 24), 15, dt(2026, 11, 15), dt(2026, 12, 15)),
        (dt(2026, 11, 14, 23, 59), 15, dt(2026, 10, 15), dt(2026, 11, 15)),
        (dt(2026, 1, 15), 15, dt(2026, 1, 15), dt(2026, 2, 15)),
        (dt(2026, 1, 5), 15, dt(2025, 12, 15), dt(2026, 1, 15)),
        (dt(2026, 2, 28, 12), 31, dt(2026, 2, 28), dt(2026, 3, 31)),  # clamped to Feb 28
        (dt(2026, 2, 27), 31, dt(2026, 1, 31), dt(2026, 2, 28)),
        (dt(2028, 2, 29, 1), 30, dt(2028, 2, 29), dt(2028, 3, 30)),  # leap year
    ],
)
def test_billing_day_anchored_months(
    now: datetime, day: int, start: datetime, end: datetime
) -> None:
    w = window_for(now, Period.MONTH, Anchor.BILLING_DAY, day)
    assert (w.start, w.end) == (start, end)
    assert billing_window(now, day) == w


def test_non_utc_input_is_converted() -> None:
    from datetime import timedelta, timezone

    local = datetime(2026, 11, 24, 1, 30, tzinfo=timezone(timedelta(hours=5)))
    assert window_for(local, Period.DAY).start == dt(2026, 11, 23)


def test_token_is_compact_utc_start() -> None:
    assert window_for(dt(2026, 11, 24, 12, 34), Period.HOUR).token == "202611241200"
