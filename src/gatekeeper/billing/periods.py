"""Billing periods of customers: the policy's billing day, and the `--period` argument.

A customer's billing period is `periods.billing_window(time, billing_day)`; a customer the
policy does not (or no longer) know is billed by calendar month.

`--period` accepts `YYYY-MM-DD` (the billing period containing that day, so a period's own
start date names it) or `YYYY-MM` (the billing period that starts in that month: exactly one
does, whatever the billing day, e.g. `2026-11` with billing day 15 is 2026-11-15..2026-12-15).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from gatekeeper.billing.types import BilledEvent
from gatekeeper.engine import StaticPolicy
from gatekeeper.engine.ports import PolicySource
from gatekeeper.events import UsageEvent
from gatekeeper.model import Policy
from gatekeeper.periods import Window, billing_window

__all__ = ["BillingCalendar", "PeriodArg", "parse_period"]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


@dataclass(frozen=True, slots=True)
class BillingCalendar:
    """Billing periods by customer, from the customer's billing day in the policy source (the
    directory in production). `prepare` the customers of a batch before billing it: the
    lookups themselves never wait."""

    source: PolicySource

    @classmethod
    def of(cls, policy: Policy) -> BillingCalendar:
        """A calendar over one policy held in memory (its customers included)."""
        return cls(StaticPolicy(policy))

    async def prepare(self, customers: Iterable[str]) -> None:
        """Have every customer of a batch at hand. Raises StoreUnavailable."""
        for customer in set(customers):
            if self.source.cached_customer(customer) is None:
                await self.source.customer(customer)

    def billing_day(self, customer: str) -> int | None:
        known = self.source.cached_customer(customer)
        return known.billing_day if known is not None else None

    def window(self, customer: str, when: datetime) -> Window:
        return billing_window(when, self.billing_day(customer))

    def bill(self, event: UsageEvent, stream_id: str = "") -> BilledEvent:
        day = self.billing_day(event.customer)
        window = billing_window(event.time, day)
        return BilledEvent(event, window.start, window.end, day, stream_id)


@dataclass(frozen=True, slots=True)
class PeriodArg:
    """A parsed `--period`: a day inside the period, or the month the period starts in."""

    text: str
    year: int
    month: int
    day: int | None  # None = "the period starting in this month"

    def window(self, billing_day: int | None) -> Window:
        """The billing period this argument names for a customer with `billing_day`."""
        if self.day is not None:
            return billing_window(datetime(self.year, self.month, self.day, tzinfo=UTC),
                                  billing_day)  # fmt: skip
        # The period containing the last day of the month starts in this month or earlier;
        # the one starting in this month is that one or the next.
        first = datetime(self.year, self.month, 1, tzinfo=UTC)
        window = billing_window(first, billing_day)
        if (window.start.year, window.start.month) != (self.year, self.month):
            window = billing_window(window.end, billing_day)
        return window


def parse_period(text: str) -> PeriodArg:
    """Parse `YYYY-MM-DD` or `YYYY-MM`. Raises ValueError naming the expected forms."""
    m = _DAY.match(text)
    try:
        if m:
            when = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC)
            return PeriodArg(text, when.year, when.month, when.day)
        m = _MONTH.match(text)
        if m:
            when = datetime(int(m[1]), int(m[2]), 1, tzinfo=UTC)
            return PeriodArg(text, when.year, when.month, None)
    except ValueError:
        pass
    raise ValueError(
        f"period {text!r}: expected YYYY-MM-DD (the period containing that day) "
        "or YYYY-MM (the period starting in that month)"
    )
