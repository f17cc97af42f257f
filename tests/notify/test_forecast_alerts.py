"""Forecast and anomaly alerts: appended once per customer + feature + period + kind, in the
decision script's entry format, and delivered by the notifier like any alert."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from redis.asyncio import Redis

from gatekeeper.clock import ManualClock
from gatekeeper.engine import StaticPolicy
from gatekeeper.events import AlertEvent, AlertKind
from gatekeeper.forecast import DailyPoint
from gatekeeper.model import Period
from gatekeeper.notify import ForecastAlerter, generate_secret, verify
from gatekeeper.store.keys import KeySpace
from tests.engine.policies import cap, metered, plan, policy
from tests.notify.helpers import endpoint, make_notifier, wall_clock
from tests.notify.receiver import WebhookReceiver

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
NANO = 1_000_000_000


class MemorySeries:
    """UsageSeries over fixed daily totals (feature None = spend in nano-units)."""

    def __init__(self) -> None:
        self.days: dict[tuple[str, str | None], dict[date, int]] = {}

    def steady(self, customer: str, feature: str | None, per_day: int, today: int) -> None:
        days = {NOW.date() - timedelta(days=i): per_day for i in range(1, 29)}
        days[NOW.date()] = today
        self.days[(customer, feature)] = days

    async def daily(
        self, customer: str, feature: str | None, start: date, end: date
    ) -> list[DailyPoint]:
        days = self.days.get((customer, feature), {})
        return [DailyPoint(d, q) for d, q in sorted(days.items()) if start <= d <= end]


def _policy():  # type: ignore[no-untyped-def]
    p = plan(
        "pro",
        metered("requests", 10_000, period=Period.MONTH),  # 500/day: ends near 15,000
        metered("tokens", None, period=Period.MONTH),  # no limit: anomalies only
        spend_cap=cap(100 * NANO),  # 5 USD/day: ends near 150 USD
    )
    return policy(p, customer="acme")


async def _entries(redis: Redis, keys: KeySpace) -> list[dict[str, str]]:
    rows = await redis.xrange(keys.alert_stream(keys.partition("acme")))
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in rows]


async def test_forecast_and_anomaly_fire_once_per_period(redis: Redis, key_prefix: str) -> None:
    async with asyncio.timeout(30):
        keys = KeySpace(prefix=key_prefix)
        series = MemorySeries()
        series.steady("acme", "requests", 500, 250)  # on pace
        series.steady("acme", "tokens", 1_000, 5_000)  # half a day at 10x the usual pace
        series.steady("acme", None, 5 * NANO, 2 * NANO)
        clock = ManualClock(NOW)
        alerter = ForecastAlerter(
            redis=redis, keys=keys, series=series, policy=StaticPolicy(_policy()), clock=clock
        )
        assert len(await alerter.check("acme")) == 3
        assert await alerter.check("acme") == []  # once per period
        clock.advance(timedelta(days=3))
        assert await alerter.check_all() == []
        entries = await _entries(redis, keys)
        alerts = [AlertEvent.from_fields(e) for e in entries]  # the script's entry format
        got = sorted((a.kind.value, a.feature or "$spend") for a in alerts)
        assert got == [("anomaly", "tokens"), ("forecast", "$spend"), ("forecast", "requests")]
        fc = next(a for a in alerts if a.kind is AlertKind.FORECAST and a.feature == "requests")
        assert fc.limit == 10_000 and fc.used == 14 * 500 + 250
        assert fc.threshold > 100 and fc.period_start == datetime(2026, 11, 1, tzinfo=UTC)
        raw = next(e for e in entries if e["id"] == fc.id)
        assert int(raw["projected"]) > 10_000 and raw["method"]
        # a hard limit: the customer will be refused from about when it is reached, not billed
        assert raw["outlook"] == "blocked"
        reached = datetime.fromisoformat(raw["limit_reached_at"].replace("Z", "+00:00"))
        assert NOW < reached < datetime(2026, 12, 1, tzinfo=UTC)
        anomaly = next(a for a in alerts if a.kind is AlertKind.ANOMALY)
        assert anomaly.used == 5_000 and anomaly.limit == 0 and anomaly.threshold >= 500

        clock.set(datetime(2026, 12, 15, 12, 0, tzinfo=UTC))  # the next period: may fire again
        for key in list(series.days):
            series.days[key] = {d + timedelta(days=30): q for d, q in series.days[key].items()}
        assert len(await alerter.check("acme")) == 3


async def test_no_forecast_alert_when_on_track_or_already_over(
    redis: Redis, key_prefix: str
) -> None:
    keys = KeySpace(prefix=key_prefix)
    series = MemorySeries()
    series.steady("acme", "requests", 100, 50)  # ends near 3,000 of 10,000
    alerter = ForecastAlerter(
        redis=redis,
        keys=keys,
        series=series,
        policy=StaticPolicy(_policy()),
        clock=ManualClock(NOW),
    )
    assert await alerter.check("acme") == []
    series.steady("acme", "requests", 800, 400)  # 11,600 used: the 100 % alert already said so
    assert await alerter.check("acme") == []


async def test_the_notifier_delivers_forecast_alerts(redis: Redis, key_prefix: str) -> None:
    async with asyncio.timeout(30):
        keys = KeySpace(prefix=key_prefix)
        series = MemorySeries()
        series.steady("acme", None, 5 * NANO, 2 * NANO)
        pol = _policy()
        alerter = ForecastAlerter(
            redis=redis, keys=keys, series=series, policy=StaticPolicy(pol), clock=ManualClock(NOW)
        )
        [alert_id] = await alerter.check("acme")
        secret = generate_secret()
        rx = await WebhookReceiver([secret]).start()
        clock = wall_clock()
        n = make_notifier(
            redis,
            key_prefix,
            [endpoint(rx.url, secret, kinds=("forecast",))],
            clock=clock,
            policy_=pol,
        )
        try:
            await n.drain()
            [arrival] = rx.requests
            verify(arrival.headers, arrival.body, [secret], now=clock.now())
            body = arrival.json()
            assert body["type"] == "gatekeeper.alert.forecast" and body["id"] == alert_id
            assert body["feature"] is None and body["currency"] == "USD"
            assert body["limit"] == 100 * NANO and body["limit_amount"] == "100.00"
            assert body["details"]["projected"] > 100 * NANO
            assert body["details"]["outlook"] == "blocked"  # the cap blocks: cut off, not billed
            assert body["period"] == {
                "start": "2026-11-01T00:00:00.000000Z",
                "end": "2026-12-01T00:00:00.000000Z",
            }
        finally:
            await n.aclose()
            await rx.stop()


def test_every_alert_kind_can_be_named_in_the_policy_file() -> None:
    from gatekeeper.config.settings_parser import ALERT_KINDS as FILE_KINDS
    from gatekeeper.notify.state import ALERT_KINDS

    assert set(FILE_KINDS) == ALERT_KINDS == {k.value for k in AlertKind}
