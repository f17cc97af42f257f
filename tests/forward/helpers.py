"""Shared pieces of the forwarder tests: real events from the engine, CloudEvents validation."""

from __future__ import annotations

import json
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from redis.asyncio import Redis

from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.events import UsageEvent
from gatekeeper.forward import USAGE_EVENT_TYPE, ForwarderSettings
from gatekeeper.store.keys import KeySpace
from tests.engine.harness import Harness, make_harness
from tests.engine.policies import flat, metered, plan, policy

TOKEN_PRICE_NANO = 1_500_003  # 0.001500003 per token: exact only in nano-units
REQUEST_PRICE_NANO = 2_000_000  # 0.002 per request


def harness_for(redis: Redis, prefix: str, customer: str) -> Harness:
    p = plan("pro", metered("tokens", None), metered("requests", None))
    prices = (flat("tokens", TOKEN_PRICE_NANO), flat("requests", REQUEST_PRICE_NANO))
    return make_harness(redis, policy(p, customer=customer, prices=prices), prefix)


async def produce(redis: Redis, prefix: str, customers: list[str], per_customer: int) -> int:
    """Admit decisions (usage, reservations and settlements) through the real engine."""
    total = 0
    for c in customers:
        h = harness_for(redis, prefix, c)
        for i in range(per_customer):
            reserve = i % 3 == 0
            meters = (MeterRequest("tokens", 10 + i, reserve=reserve), MeterRequest("requests", 1))
            d = await h.engine.decide(
                DecisionRequest(c, meters=meters, request_id=f"r-{c}-{i}", idempotency_key=None)
            )
            assert d.allowed
            total += 2
            if reserve:
                await h.engine.settle(c, d.decision_id, {"tokens": 5 + i})
                total += 1
    return total


async def stream_events(redis: Redis, prefix: str, partitions: int = 16) -> list[UsageEvent]:
    keys = KeySpace(prefix=prefix, partitions=partitions)
    out: list[UsageEvent] = []
    for stream in keys.all_usage_streams():
        entries = await redis.xrange(stream) or []
        out.extend(UsageEvent.from_fields(f or {}) for _, f in entries)
    return out


def validate(obj: dict[str, Any]) -> CloudEvent:
    """Parse one structured event through the cloudevents SDK; it validates the attributes."""
    event = JSONFormat().read(CloudEvent, json.dumps(obj).encode())
    assert isinstance(event, CloudEvent)
    assert event.get_specversion() == "1.0"
    assert event.get_type() == USAGE_EVENT_TYPE
    assert event.get_source()
    assert event.get_subject()
    assert event.get_time() is not None and event.get_time().utcoffset() is not None  # type: ignore[union-attr]
    assert event.get_datacontenttype() == "application/json"
    return event


def settings(url: str, **overrides: Any) -> ForwarderSettings:
    base: dict[str, Any] = {
        "batch_size": 7,
        "max_wait_ms": 50,
        "max_attempts": 2,
        "timeout_s": 2.0,
        "backoff_base_ms": 1,
        "backoff_max_ms": 5,
    }
    base.update(overrides)
    return ForwarderSettings(url=url, **base)
