"""Period windows in UTC: calendar-aligned, or monthly anchored to a customer's billing day.

A window is half-open: start <= t < end. Counter keys carry the window start, so a new
period is a new key and nothing is ever "reset".
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gatekeeper.model import Anchor, Period

__all__ = ["Window", "billing_window", "window_for"]


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    @property
    def token(self) -> str:
        """Compact UTC start used inside Redis keys, e.g. 202611240000."""
        return self.start.strftime("%Y%m%d%H%M")

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


def _anchored_month_start(year: int, month: int, day: int) -> datetime:
    last = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(day, last), tzinfo=UTC)


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def _month_window(now: datetime, day: int) -> Window:
    this_start = _anchored_month_start(now.year, now.month, day)
    if now >= this_start:
        ny, nm = _add_months(now.year, now.month, 1)
        return Window(this_start, _anchored_month_start(ny, nm, day))
    py, pm = _add_months(now.year, now.month, -1)
    return Window(_anchored_month_start(py, pm, day), this_start)


def window_for(
    now: datetime, period: Period, anchor: Anchor = Anchor.CALENDAR, billing_day: int | None = None
) -> Window:
    """The window of `period` that contains `now` (aware; converted to UTC).

    `anchor=billing_day` applies to months only: the month starts on `billing_day` (default 1),
    clamped to the last day of short months (billing day 31 -> Feb 28/29).
    """
    now = now.astimezone(UTC)
    if period is Period.MINUTE:
        start = now.replace(second=0, microsecond=0)
        return Window(start, start + timedelta(minutes=1))
    if period is Period.HOUR:
        start = now.replace(minute=0, second=0, microsecond=0)
        return Window(start, start + timedelta(hours=1))
    if period is Period.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return Window(start, start + timedelta(days=1))
    day = (billing_day or 1) if anchor is Anchor.BILLING_DAY else 1
    return _month_window(now, day)


def billing_window(now: datetime, billing_day: int | None) -> Window:
    """The customer's billing period (spend caps and price tiers): a month from billing_day."""
    return window_for(now, Period.MONTH, Anchor.BILLING_DAY, billing_day)
