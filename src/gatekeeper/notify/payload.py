"""The versioned JSON bodies of alert webhooks (schema: notify/README.md).

`gatekeeper.alert.<kind>` carries one alert; `gatekeeper.alert.digest` groups the alerts of one
customer that arrived within its digest window. Integers stay integers (units, or nano-units of
`currency` for spend alerts, which also carry exact decimal strings); times are RFC 3339 UTC.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from gatekeeper.events import AlertEvent
from gatekeeper.forward.cloudevent import JsonObject, JsonValue, rfc3339
from gatekeeper.money import format_nano

__all__ = [
    "ALERT_TYPE_PREFIX",
    "DIGEST_TYPE",
    "EXTRA_FIELDS",
    "PAYLOAD_VERSION",
    "alert_payload",
    "digest_id",
    "digest_payload",
    "encode",
]

PAYLOAD_VERSION = 1
ALERT_TYPE_PREFIX = "gatekeeper.alert."
DIGEST_TYPE = "gatekeeper.alert.digest"
# Optional stream fields of forecast and anomaly alerts, copied into the payload's `details`.
EXTRA_FIELDS = (
    "cause",  # blocked, resumed: quota_exhausted, spend_cap or rate_limited
    "projected",
    "low",
    "high",
    "method",
    "outlook",  # forecast: "blocked" (a limit that refuses) or "over_limit" (one that bills on)
    "limit_reached_at",  # forecast: when the projection reaches it (RFC 3339), if in the period
    "score",
    "baseline",
    "today_rate",
)


def _number(text: str) -> JsonValue:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def alert_payload(
    alert: AlertEvent,
    *,
    unit: str | None = None,
    currency: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> JsonObject:
    """One alert as its webhook body (version 1).

    `unit` (feature alerts) and `currency` (spend alerts, `feature` null) are included when
    known; spend alerts then also carry `used_amount` / `limit_amount` as exact decimal strings
    in major units. `extra` stream fields named in EXTRA_FIELDS land in `details`.
    """
    body: JsonObject = {
        "type": f"{ALERT_TYPE_PREFIX}{alert.kind}",
        "version": PAYLOAD_VERSION,
        "id": alert.id,
        "customer": alert.customer,
        "plan": alert.plan,
        "feature": alert.feature,
        "threshold": alert.threshold,
        "used": alert.used,
        "limit": alert.limit,
    }
    if alert.feature is not None and unit:
        body["unit"] = unit
    if alert.feature is None and currency:
        body["currency"] = currency
        body["used_amount"] = format_nano(alert.used)
        body["limit_amount"] = format_nano(alert.limit)
    if alert.cause:  # blocked, resumed (also in `details`, where version 1 first sent it)
        body["cause"] = alert.cause
    if alert.at is not None:  # an absolute point (alert_at), not a percentage
        body["alert_at"] = alert.at
        if alert.feature is None and currency:
            body["alert_at_amount"] = format_nano(alert.at)
    body["period"] = {"start": rfc3339(alert.period_start), "end": rfc3339(alert.period_end)}
    body["occurred_at"] = rfc3339(alert.time)
    body["decision_id"] = alert.decision_id or None
    details = {k: _number(v) for k, v in (extra or {}).items() if k in EXTRA_FIELDS and v}
    if details:
        body["details"] = dict(details)
    return body


def digest_id(customer: str, alert_ids: Sequence[str]) -> str:
    """A stable id for a digest of these alerts: the same set gives the same id (so a digest
    re-sent after a restart is deduplicated by receivers like any retry)."""
    material = "\n".join([customer, *sorted(alert_ids)]).encode()
    return "dg_" + hashlib.sha256(material).hexdigest()[:32]


def digest_payload(
    *,
    customer: str,
    alerts: Sequence[JsonObject],
    window_start: datetime,
    window_end: datetime,
) -> JsonObject:
    """Several alerts of one customer as one webhook body; `alerts` are `alert_payload`s in
    the order they occurred. Raises ValueError for an empty digest."""
    if not alerts:
        raise ValueError("a digest needs at least one alert")
    ids = [str(a["id"]) for a in alerts]
    return {
        "type": DIGEST_TYPE,
        "version": PAYLOAD_VERSION,
        "id": digest_id(customer, ids),
        "customer": customer,
        "alerts": list(alerts),
        "window": {"start": rfc3339(window_start), "end": rfc3339(window_end)},
    }


def encode(payload: JsonObject) -> bytes:
    """The exact bytes that are signed and sent (compact UTF-8 JSON)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
