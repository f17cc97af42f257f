"""Stream entries written by the scripts parse into the event types."""

from __future__ import annotations

from redis.asyncio import Redis

from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.events import AlertEvent, AlertKind, UsageEvent, UsageKind
from tests.engine.harness import START, make_harness
from tests.engine.policies import flat, metered, plan, policy


async def test_usage_and_alert_entries_parse(redis: Redis, key_prefix: str) -> None:
    p = plan("p", metered("tokens", 100, thresholds=(50,)))
    h = make_harness(redis, policy(p, prices=(flat("tokens", 3),)), key_prefix)
    d = await h.engine.decide(
        DecisionRequest("cust", meters=(MeterRequest("tokens", 60, reserve=True),), request_id="r1")
    )
    await h.engine.settle("cust", d.decision_id, {"tokens": 40})
    raw = await redis.xrange(h.usage_stream())
    events = [UsageEvent.from_fields(f) for _, f in raw]
    assert [(e.kind, e.quantity, e.amount_nano) for e in events] == [
        (UsageKind.RESERVATION, 60, 180),
        (UsageKind.ADJUSTMENT, -20, -60),
    ]
    assert events[0].time == START and events[0].request_id == "r1"
    assert (events[1].estimate, events[1].actual) == (60, 40)
    assert events[0].id != events[1].id
    alert = AlertEvent.from_fields((await redis.xrange(h.alert_stream()))[0][1])
    assert (alert.kind, alert.feature, alert.threshold, alert.used, alert.limit) == (
        AlertKind.THRESHOLD,
        "tokens",
        50,
        60,
        100,
    )
    assert alert.period_start == START.replace(hour=0)
