"""Absolute alert points (`alert_at`): a unit count of a feature or a money amount of spend,
beside the percentages; each crossed once per window, with or without a limit or cap in force,
by a decision or by a settlement, however many decisions race past it."""

from __future__ import annotations

import asyncio
import dataclasses

from redis.asyncio import Redis

from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.events import AlertEvent
from gatekeeper.model import SpendCap
from tests.engine.harness import Harness, make_harness
from tests.engine.policies import flat, metered, plan, policy


def req(qty: int = 1, *, reserve: bool = False) -> DecisionRequest:
    return DecisionRequest("cust", meters=(MeterRequest("requests", qty, reserve),))


def _points(alerts: list[dict[str, str]]) -> list[tuple[str, str, str, str]]:
    """(kind, threshold, at, used) of each alert, oldest first."""
    return [(a["kind"], a["threshold"], a.get("at", ""), a["used"]) for a in alerts]


def _harness(redis: Redis, key_prefix: str, *, limit: int | None, thresholds=(), at=(), cap=None):  # type: ignore[no-untyped-def]
    ent = dataclasses.replace(metered("requests", limit), alert_thresholds=thresholds, alert_at=at)
    p = plan("p", ent, spend_cap=cap)
    return make_harness(redis, policy(p, prices=(flat("requests", 3_000),)), key_prefix)


async def test_a_unit_count_alerts_once_without_any_limit(redis: Redis, key_prefix: str) -> None:
    h: Harness = _harness(redis, key_prefix, limit=None, at=(3, 7))
    for _ in range(9):
        assert (await h.engine.decide(req())).allowed
    assert _points(await h.alerts()) == [("threshold", "0", "3", "3"), ("threshold", "0", "7", "7")]
    event = AlertEvent.from_fields((await h.alerts())[0])
    assert (event.at, event.threshold, event.feature) == (3, 0, "requests")


async def test_points_and_percentages_side_by_side(redis: Redis, key_prefix: str) -> None:
    h = _harness(redis, key_prefix, limit=10, thresholds=(50, 100), at=(3, 8))
    for _ in range(10):
        assert (await h.engine.decide(req())).allowed
    assert _points(await h.alerts()) == [
        ("threshold", "0", "3", "3"),
        ("threshold", "50", "", "5"),
        ("threshold", "0", "8", "8"),
        ("threshold", "100", "", "10"),
    ]
    # a decision that jumps past two points says both, once
    h2 = _harness(redis, key_prefix + "b", limit=None, at=(2, 4, 100))
    assert (await h2.engine.decide(req(5))).allowed
    assert [a["at"] for a in await h2.alerts()] == ["2", "4"]


async def test_a_money_amount_alerts_with_or_without_a_cap(redis: Redis, key_prefix: str) -> None:
    """3,000 nano-units a request: 6,000 reached on the 2nd, 9,000 on the 3rd."""
    no_cap = SpendCap(amount_nano=None, alert_at=(6_000, 9_000))
    h = _harness(redis, key_prefix, limit=None, cap=no_cap)
    for _ in range(4):
        assert (await h.engine.decide(req())).allowed
    alerts = await h.alerts()
    assert _points(alerts) == [
        ("threshold", "0", "6000", "6000"),
        ("threshold", "0", "9000", "9000"),
    ]
    assert all(a["feature"] == "" for a in alerts)
    capped = SpendCap(amount_nano=12_000, alert_thresholds=(50,), alert_at=(4_000,))
    h2 = _harness(redis, key_prefix + "c", limit=None, cap=capped)
    for _ in range(3):
        assert (await h2.engine.decide(req())).allowed
    assert _points(await h2.alerts()) == [  # one decision crosses both: percentages first
        ("threshold", "50", "", "6000"),
        ("threshold", "0", "4000", "6000"),
    ]


async def test_each_point_once_under_concurrency(redis: Redis, key_prefix: str) -> None:
    h = _harness(redis, key_prefix, limit=None, at=(10, 20, 30))
    results = await asyncio.gather(*(h.engine.decide(req()) for _ in range(40)))
    assert all(d.allowed for d in results)
    assert sorted(a["at"] for a in await h.alerts()) == ["10", "20", "30"]


async def test_a_settlement_that_crosses_a_point_says_so(redis: Redis, key_prefix: str) -> None:
    h = _harness(redis, key_prefix, limit=None, at=(50,))
    d = await h.engine.decide(req(10, reserve=True))
    assert d.allowed and await h.alerts() == []
    await h.engine.settle("cust", d.decision_id, {"requests": 60})
    assert _points(await h.alerts()) == [("threshold", "0", "50", "60")]
