"""Forecast and anomaly alerts in `gatekeeper worker`: the revenue ledger as the daily series,
checked on a schedule by a supervised loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import date

from gatekeeper.billing import BillingStore
from gatekeeper.billing.types import LedgerRow
from gatekeeper.forecast import DailyPoint
from gatekeeper.notify.forecast_alerts import ForecastAlerter

__all__ = ["ForecastLoop", "LedgerSeries", "daily_points"]

log = logging.getLogger(__name__)


class LedgerSeries:
    """UsageSeries over the billing store's revenue ledger (per customer, feature, UTC day)."""

    def __init__(self, store: BillingStore) -> None:
        self._store = store

    async def daily(
        self, customer: str, feature: str | None, start: date, end: date
    ) -> list[DailyPoint]:
        """Units of `feature` per day, or nano-units of spend per day when `feature` is None."""
        return daily_points(await self._store.revenue(customer, start, end), feature)


def daily_points(rows: Iterable[LedgerRow], feature: str | None) -> list[DailyPoint]:
    """Ledger rows as daily totals: units of `feature`, or nano-units of spend when None."""
    totals: dict[date, int] = {}
    for row in rows:
        if feature is None:
            totals[row.day] = totals.get(row.day, 0) + row.amount_nano
        elif row.feature == feature:
            totals[row.day] = totals.get(row.day, 0) + row.quantity
    return [DailyPoint(day, quantity) for day, quantity in sorted(totals.items())]


class ForecastLoop:
    """Runs `alerter.check_all()` every `interval_s`; `run()`, `run_once()`, `stop()`."""

    def __init__(self, alerter: ForecastAlerter, *, interval_s: float = 900.0) -> None:
        self._alerter = alerter
        self._interval_s = interval_s
        self._stopping = asyncio.Event()
        self.checks = 0

    async def run_once(self) -> list[str]:
        ids = await self._alerter.check_all()
        self.checks += 1
        if ids:
            log.info("forecast alerts appended: %d", len(ids))
        return ids

    async def run(self) -> None:
        """Check now, then every interval until stop(); errors propagate (the worker exits 1)."""
        while not self._stopping.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)

    def stop(self) -> None:
        self._stopping.set()
