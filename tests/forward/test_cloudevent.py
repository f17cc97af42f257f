"""UsageEvent -> CloudEvents 1.0: shape, ids, exact money, SDK validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from gatekeeper.events import UsageKind
from gatekeeper.forward import rfc3339, to_cloudevent
from gatekeeper.money import NANO
from tests.engine.harness import START
from tests.forward.helpers import produce, stream_events, validate


async def test_every_engine_event_maps_to_a_valid_cloudevent(redis: Redis, key_prefix: str) -> None:
    await produce(redis, key_prefix, ["acme"], per_customer=4)
    events = await stream_events(redis, key_prefix)
    kinds = {e.kind for e in events}
    assert kinds == {UsageKind.USAGE, UsageKind.RESERVATION, UsageKind.ADJUSTMENT}
    for usage in events:
        obj = to_cloudevent(usage, source="/gatekeeper/test")
        ce = validate(obj)
        assert ce.get_id() == usage.id
        assert ce.get_subject() == "acme"
        assert ce.get_source() == "/gatekeeper/test"
        assert ce.get_time() == usage.time == START
        data = ce.get_data()
        assert isinstance(data, dict)
        assert data["feature"] == usage.feature and data["kind"] == str(usage.kind)
        assert (data["quantity"], data["granted"], data["billable"]) == (
            usage.quantity,
            usage.granted,
            usage.billable,
        )
        assert data["amount_nano"] == usage.amount_nano
        assert Decimal(data["amount"]) * NANO == usage.amount_nano  # exact, no float
        assert data["price"] == data["amount"] and data["unit"] == usage.unit != ""
        assert data["currency"] == "USD" and data["plan"] == "pro"
        assert data["decision_id"] == usage.decision_id
        assert data["request_id"] == (usage.request_id or None)
        assert data["idempotency_key"] is None
        if usage.kind is UsageKind.ADJUSTMENT:
            assert (data["estimate"], data["actual"]) == (usage.estimate, usage.actual)
            assert data["quantity"] < 0 and data["amount"].startswith("-")
        else:
            assert "estimate" not in data


async def test_mapping_is_deterministic_so_redeliveries_share_the_id(
    redis: Redis, key_prefix: str
) -> None:
    await produce(redis, key_prefix, ["acme"], per_customer=2)
    for usage in await stream_events(redis, key_prefix):
        assert to_cloudevent(usage) == to_cloudevent(usage)
        assert to_cloudevent(usage)["source"] == "gatekeeper"


def test_time_is_rfc3339_utc_with_z() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 11, 24, 14, 0, 0, 5, tzinfo=plus2)) == (
        "2026-11-24T12:00:00.000005Z"
    )
    assert rfc3339(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000000Z"
    with pytest.raises(ValueError):
        rfc3339(datetime(2026, 1, 1))
