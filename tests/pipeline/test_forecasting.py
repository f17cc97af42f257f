"""The revenue ledger feeds forecast alerts: steady usage heading past the limit is flagged."""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio import Redis

from gatekeeper.billing import BillingStore
from gatekeeper.clock import ManualClock
from gatekeeper.config import parse_config
from gatekeeper.engine import DecisionRequest, MeterRequest, StaticPolicy
from gatekeeper.events import AlertEvent, AlertKind
from gatekeeper.notify.forecast_alerts import ForecastAlerter
from gatekeeper.pipeline.forecasting import ForecastLoop, LedgerSeries
from tests.engine.harness import START, make_harness
from tests.pipeline.support import PARTITIONS, POLICY_YAML, keyspace, make_worker

# requests: 10 per day would be 300 a month; the limit of 200 is passed around day 20
YAML = POLICY_YAML.replace(
    "requests: {limit: 100000000, period: month, anchor: billing_day}",
    "requests: {limit: 200, period: month}",
)


async def test_ledger_series_and_forecast_alert(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    policy = parse_config(YAML).policy
    clock = ManualClock(START.replace(day=1, hour=12))
    h = make_harness(redis, policy, key_prefix, clock=clock, partitions=PARTITIONS)
    for _ in range(10):  # ten days of 10 requests
        for _ in range(10):
            assert (
                await h.engine.decide(
                    DecisionRequest("beta", meters=(MeterRequest("requests", 1),))
                )
            ).allowed
        clock.advance(timedelta(days=1))
    await make_worker(redis, store, key_prefix, clock=clock).drain()

    series = LedgerSeries(store)
    points = await series.daily(
        "beta", "requests", START.replace(day=1).date(), START.replace(day=10).date()
    )
    assert [p.quantity for p in points] == [10] * 10
    spend = await series.daily(
        "beta", None, START.replace(day=1).date(), START.replace(day=10).date()
    )
    assert spend[0].quantity == 10 * 4_000_000  # 10 x 0.004 USD in nano-units

    alerter = ForecastAlerter(
        redis=redis,
        keys=keyspace(key_prefix),
        series=series,
        policy=StaticPolicy(policy),
        clock=clock,
    )
    loop = ForecastLoop(alerter, interval_s=3600)
    first = await loop.run_once()
    again = await loop.run_once()  # once per period
    raw = await redis.xrange(
        keyspace(key_prefix).alert_stream(keyspace(key_prefix).partition("beta"))
    )
    alerts = [AlertEvent.from_fields(f) for _, f in raw]
    forecast = [a for a in alerts if a.kind is AlertKind.FORECAST]
    assert first and not again
    assert [(a.customer, a.feature, a.limit) for a in forecast] == [("beta", "requests", 200)]
