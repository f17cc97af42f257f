"""Forecast and anomaly alerts in `gatekeeper worker`: the revenue ledger as the daily series,
checked on a schedule by a supervised loop."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date

from gatekeeper.backoff import Backoff
from gatekeeper.billing import BillingStore
from gatekeeper.billing.types import LedgerRow
from gatekeeper.forecast import DailyPoint
from gatekeeper.loop import Periodic
from gatekeeper.notify.forecast_alerts import ForecastAlerter
from gatekeeper.pipeline.failures import is_transient

__all__ = ["ForecastLoop", "LedgerSeries", "daily_points"]

log = logging.getLogger(__name__)

_RETRY = Backoff(1.0, 60.0)  # a check that failed (Redis, the billing store)


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


class ForecastLoop(Periodic):
    """Runs `alerter.check_all()` now and every `interval_s`; `run()`, `run_once()`, `stop()`.
    Redis unreachable is retried with backoff; anything else propagates (the worker exits 1).
    """

    def __init__(self, alerter: ForecastAlerter, *, interval_s: float = 900.0) -> None:
        super().__init__(
            "forecast alerts",
            self.run_once,
            every_s=interval_s,
            transient=is_transient,
            backoff=_RETRY,
        )
        self._alerter = alerter
        self.checks = 0

    async def run_once(self) -> list[str]:
        ids = await self._alerter.check_all()
        self.checks += 1
        if ids:
            log.info("forecast alerts appended: %d", len(ids))
        return ids
