"""UsageEvent -> CloudEvents 1.0 structured-mode JSON (DESIGN.md §6).

The shape is what OpenMeter/Flexprice-style ingest accepts: `subject` is the customer, `type`
selects the meter, `id` is the usage event's own id, so every redelivery of the same event
carries the same CloudEvent id and the receiver deduplicates on it. Money crosses as an exact
decimal string in major units (`amount`) and as integer nano-units (`amount_nano`); no floats.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias

from gatekeeper.events import UsageEvent
from gatekeeper.money import format_nano

__all__ = [
    "BATCH_CONTENT_TYPE",
    "CONTENT_TYPE",
    "USAGE_EVENT_TYPE",
    "JsonObject",
    "JsonValue",
    "rfc3339",
    "to_cloudevent",
]

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"

USAGE_EVENT_TYPE = "io.gatekeeper.usage.v1"  # usage, reservations and adjustments alike
CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def rfc3339(when: datetime) -> str:
    """An aware datetime as RFC 3339 in UTC with microseconds and a `Z` suffix.

    Raises ValueError for a naive datetime (its zone would be a guess).
    """
    if when.tzinfo is None:
        raise ValueError("CloudEvents time needs an aware datetime")
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_cloudevent(event: UsageEvent, *, source: str = "gatekeeper") -> JsonObject:
    """One usage event as a CloudEvents 1.0 JSON object (structured content mode).

    data fields: `quantity`, `granted`, `billable` in the feature's `unit` (signed for an
    adjustment); `price` (what this event costs: a decimal string in major units of
    `currency`, equal to `amount`, kept under both names) and `amount_nano` (integer
    nano-units) price the billable units at the tiers they fell in; `kind` is usage |
    reservation | adjustment; `request_id` and `idempotency_key` are null when the decision
    had none. Adjustments also carry `estimate` and `actual`. Raises ValueError when `source`
    is empty.
    """
    if not source:
        raise ValueError("CloudEvents source must not be empty")
    data: JsonObject = {
        "feature": event.feature,
        "quantity": event.quantity,
        "granted": event.granted,
        "billable": event.billable,
        "unit": event.unit,
        "price": format_nano(event.amount_nano),
        "amount": format_nano(event.amount_nano),
        "amount_nano": event.amount_nano,
        "currency": event.currency,
        "kind": str(event.kind),
        "overage": event.overage,
        "decision_id": event.decision_id,
        "request_id": event.request_id or None,
        "idempotency_key": event.idempotency_key or None,
        "plan": event.plan,
    }
    if event.estimate is not None:
        data["estimate"] = event.estimate
    if event.actual is not None:
        data["actual"] = event.actual
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": USAGE_EVENT_TYPE,
        "subject": event.customer,
        "time": rfc3339(event.time),
        "datacontenttype": "application/json",
        "data": data,
    }
