"""Forecast and anomaly alerts: daily series in, alert stream entries out.

`ForecastAlerter.check(customer)` looks at each metered feature of the customer (and its spend
cap) and appends to the partition's alert stream, in the decision script's entry format:

- `forecast`: the period is projected to end above the limit (or cap) while usage is still
  below it. threshold = projected % of the limit; used = so far; extra fields projected, low,
  high, method.
- `anomaly`: today's pace is far above the recent daily median (`detect_anomaly`).
  threshold = today's pace % of the baseline; used = today's total; limit = the limit or cap
  (0 when none); extra fields score, baseline, today_rate.

Each fires at most once per customer + feature (or spend) + period + kind: a SET NX key and the
XADD run in one script, so a crash never leaves one without the other. Periods are the
entitlement's (the billing month for spend); features counted per minute or hour get no
forecast, and their anomalies are once per UTC day. The notifier delivers these like any alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from redis.asyncio import Redis

from gatekeeper.clock import Clock, to_us
from gatekeeper.engine.ports import PolicySource
from gatekeeper.events import AlertKind
from gatekeeper.forecast import (
    DailyPoint,
    detect_anomaly,
    forecast_spend,
    forecast_usage,
    outlook,
    projected_overage,
)
from gatekeeper.forward.cloudevent import rfc3339
from gatekeeper.model import CapAction, Customer, Period
from gatekeeper.periods import Window, billing_window, window_for
from gatekeeper.store.keys import KeySpace

__all__ = ["ForecastAlerter", "UsageSeries"]

# KEYS[1] forecast_alerted marker  KEYS[2] alert stream (same slot)
# ARGV[1] marker ttl ms, ARGV[2..] the entry's field/value pairs. Returns 1 if appended.
# (Inline rather than a lua/*.lua file: package data only ships gatekeeper/lua/.)
_APPEND_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
  return 1
end
return 0
"""
_MARKER_GRACE = timedelta(days=1)


class UsageSeries(Protocol):
    async def daily(
        self, customer: str, feature: str | None, start: date, end: date
    ) -> list[DailyPoint]:
        """One total per UTC day from `start` to `end` inclusive (days without usage may be
        missing): units of `feature`, or nano-units of spend when `feature` is None."""
        ...


@dataclass(frozen=True, slots=True)
class _Subject:
    feature: str | None
    limit: int | None
    window: Window
    forecastable: bool
    refused_at: int | None = None  # from this count on requests are refused (Outlook)


class ForecastAlerter:
    """Appends forecast/anomaly alerts (see the module docstring). Raises redis errors and
    whatever `series` raises; ValueError for a customer the policy does not know."""

    def __init__(
        self,
        *,
        redis: Redis,
        keys: KeySpace,
        series: UsageSeries,
        policy: PolicySource,
        clock: Clock,
        history_days: int = 28,
        anomaly_k: float = 5.5,
        min_history: int = 7,
        customer_ids: Callable[[], AsyncIterator[list[str]]] | None = None,
    ) -> None:
        """`customer_ids`: every customer id, a chunk at a time (the directory's); None = the
        customers of `policy.current()` (a policy held in memory)."""
        self._customer_ids = customer_ids
        self._redis = redis
        self._keys = keys
        self._series = series
        self._policy = policy
        self._clock = clock
        self._history = timedelta(days=history_days)
        self._k = anomaly_k
        self._min_history = min_history
        self._append = redis.register_script(_APPEND_ONCE)

    async def check_all(self) -> list[str]:
        """`check` every customer; returns the ids of alerts appended."""
        ids: list[str] = []
        async for chunk in self._all_ids():
            for customer in chunk:
                try:
                    ids.extend(await self.check(customer))
                except ValueError:  # removed since it was listed
                    continue
        return ids

    async def _all_ids(self) -> AsyncIterator[list[str]]:
        if self._customer_ids is None:
            yield list(self._policy.current().customers)
            return
        async for chunk in self._customer_ids():
            yield chunk

    async def check(self, customer_id: str) -> list[str]:
        """Evaluate one customer now; returns the ids of alerts appended by this call."""
        customer = await self._policy.customer(customer_id)
        if customer is None:
            raise ValueError(f"unknown customer {customer_id!r}")
        now = self._clock.now()
        ids: list[str] = []
        for subject in self._subjects(customer, now):
            start = min(subject.window.start - self._history, now - self._history)
            points = await self._series.daily(
                customer.id, subject.feature, start.date(), now.date()
            )
            if subject.forecastable and subject.limit is not None:
                alert_id = await self._forecast(customer, subject, points, now)
                if alert_id:
                    ids.append(alert_id)
            alert_id = await self._anomaly(customer, subject, points, now)
            if alert_id:
                ids.append(alert_id)
        return ids

    def _subjects(self, customer: Customer, now: datetime) -> list[_Subject]:
        out = []
        for feature, ent in sorted(customer.entitlements.metered.items()):
            daily = ent.period in (Period.DAY, Period.MONTH)
            window = (
                window_for(now, ent.period, ent.anchor, customer.billing_day)
                if daily
                else window_for(now, Period.DAY)
            )
            out.append(_Subject(feature, ent.limit, window, daily, ent.ceiling))
        cap = customer.effective_spend_cap
        if cap is not None and cap.amount_nano is not None:
            refused = cap.amount_nano if cap.action is CapAction.BLOCK else None
            window = billing_window(now, customer.billing_day)
            out.append(_Subject(None, cap.amount_nano, window, True, refused))
        return out

    async def _forecast(
        self, customer: Customer, subject: _Subject, points: list[DailyPoint], now: datetime
    ) -> str | None:
        window, limit = subject.window, subject.limit
        assert limit is not None
        project = forecast_usage if subject.feature is not None else forecast_spend
        fc = project(points, period_start=window.start, period_end=window.end, now=now)
        used = sum(p.quantity for p in points if window.start.date() <= p.day <= now.date())
        if limit <= 0 or used >= limit or projected_overage(fc, limit) is None:
            return None
        seen = outlook(
            fc,
            used=used,
            limit=limit,
            refused_at=subject.refused_at,
            now=now,
            period_end=window.end,
        )
        extra = {
            "projected": fc.projected,
            "low": fc.low,
            "high": fc.high,
            "method": fc.method,
            "outlook": seen.verdict,
            "limit_reached_at": "" if seen.reached_at is None else rfc3339(seen.reached_at),
        }
        threshold = fc.projected * 100 // limit
        return await self._emit(
            AlertKind.FORECAST, customer, subject, now, threshold, used, limit, extra
        )

    async def _anomaly(
        self, customer: Customer, subject: _Subject, points: list[DailyPoint], now: datetime
    ) -> str | None:
        result = detect_anomaly(points, now=now, k=self._k, min_history=self._min_history)
        if not result.flag:
            return None
        today = sum(p.quantity for p in points if p.day == now.date())
        threshold = int(result.today_rate * 100 / result.baseline) if result.baseline > 0 else 0
        extra = {
            "score": round(result.score, 3),
            "baseline": round(result.baseline, 3),
            "today_rate": round(result.today_rate, 3),
        }
        return await self._emit(
            AlertKind.ANOMALY, customer, subject, now, threshold, today, subject.limit or 0, extra
        )

    async def _emit(
        self,
        kind: AlertKind,
        customer: Customer,
        subject: _Subject,
        now: datetime,
        threshold: int,
        used: int,
        limit: int,
        extra: Mapping[str, object],
    ) -> str | None:
        window = subject.window
        marker = self._keys.forecast_alerted(customer.id, kind.value, subject.feature, window.token)
        material = f"{kind.value}\n{customer.id}\n{subject.feature or ''}\n{to_us(window.start)}"
        alert_id = f"{kind.value}_{hashlib.sha256(material.encode()).hexdigest()[:32]}"
        fields: dict[str, object] = {
            "id": alert_id,
            "kind": kind.value,
            "customer": customer.id,
            "plan": customer.plan,
            "feature": subject.feature or "",
            "threshold": threshold,
            "used": used,
            "limit": limit,
            "period_start_us": to_us(window.start),
            "period_end_us": to_us(window.end),
            "time_us": to_us(now),
            "decision_id": "",
            **extra,
        }
        ttl_ms = int((window.end + _MARKER_GRACE - now).total_seconds() * 1000)
        stream = self._keys.alert_stream(self._keys.partition(customer.id))
        args: list[str | int] = [max(1, ttl_ms)]
        for name, value in fields.items():
            args.extend((name, str(value)))
        appended = await self._append(keys=[marker, stream], args=args)
        return alert_id if int(appended) == 1 else None
