"""The versioned JSON schema of alert webhooks, and endpoint configuration from settings."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime

import pytest

from gatekeeper.events import AlertEvent, AlertKind
from gatekeeper.notify import (
    Endpoint,
    NotifierSettings,
    alert_payload,
    digest_id,
    digest_payload,
    encode,
    endpoints_from_settings,
    generate_secret,
)
from gatekeeper.settings import AlertSettings, WebhookSettings

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _alert(feature: str | None, kind: AlertKind = AlertKind.THRESHOLD) -> AlertEvent:
    return AlertEvent(
        id="d1.a1",
        kind=kind,
        customer="acme",
        plan="pro",
        feature=feature,
        threshold=80,
        used=8_000_000_000 if feature is None else 80,
        limit=10_000_000_000 if feature is None else 100,
        period_start=datetime(2026, 11, 1, tzinfo=UTC),
        period_end=datetime(2026, 12, 1, tzinfo=UTC),
        time=T,
        decision_id="d1",
    )


def test_feature_alert_payload_schema() -> None:
    body = alert_payload(_alert("requests"), unit="request", currency="USD")
    assert body == {
        "type": "gatekeeper.alert.threshold",
        "version": 1,
        "id": "d1.a1",
        "customer": "acme",
        "plan": "pro",
        "feature": "requests",
        "threshold": 80,
        "used": 80,
        "limit": 100,
        "unit": "request",
        "period": {"start": "2026-11-01T00:00:00.000000Z", "end": "2026-12-01T00:00:00.000000Z"},
        "occurred_at": "2026-11-24T12:00:00.000000Z",
        "decision_id": "d1",
    }
    assert json.loads(encode(body)) == body and b" " not in encode(body)


def test_spend_alert_payload_carries_currency_and_exact_amounts() -> None:
    body = alert_payload(_alert(None, AlertKind.SPEND_CAP), unit="request", currency="USD")
    assert body["feature"] is None and "unit" not in body
    assert (body["currency"], body["used_amount"], body["limit_amount"]) == ("USD", "8.00", "10.00")
    assert alert_payload(_alert(None))["type"] == "gatekeeper.alert.threshold"
    assert "currency" not in alert_payload(_alert(None))  # unknown without a policy


def test_blocked_alerts_name_their_cause_and_points_their_amount() -> None:
    blocked = dataclasses.replace(_alert("requests", AlertKind.BLOCKED), cause="rate_limited")
    body = alert_payload(blocked, extra={"cause": "rate_limited"})
    assert body["cause"] == "rate_limited" and body["details"] == {"cause": "rate_limited"}
    assert "cause" not in alert_payload(_alert("requests"))
    point = dataclasses.replace(_alert(None), threshold=0, at=7_500_000_000)
    body = alert_payload(point, currency="USD")
    assert (body["threshold"], body["alert_at"], body["alert_at_amount"]) == (0, 7_500_000_000,
                                                                               "7.50")  # fmt: skip
    units = alert_payload(dataclasses.replace(_alert("requests"), threshold=0, at=75))
    assert units["alert_at"] == 75 and "alert_at_amount" not in units
    assert "alert_at" not in alert_payload(_alert("requests"))


def test_digest_payload_and_stable_id() -> None:
    alerts = [alert_payload(_alert("requests")), {**alert_payload(_alert("requests")), "id": "x"}]
    body = digest_payload(customer="acme", alerts=alerts, window_start=T, window_end=T)
    assert body["type"] == "gatekeeper.alert.digest" and body["version"] == 1
    assert body["id"] == digest_id("acme", ["x", "d1.a1"])  # order-independent
    assert body["window"] == {"start": "2026-11-24T12:00:00.000000Z", "end": body["window"]["end"]}
    with pytest.raises(ValueError):
        digest_payload(customer="acme", alerts=[], window_start=T, window_end=T)


def test_endpoints_from_settings_reads_secrets_from_the_mapping() -> None:
    current, previous = generate_secret(), generate_secret()
    alerts = AlertSettings(
        webhooks=(
            WebhookSettings("https://ops.example/hooks?token=abc", "OPS_SECRET", ("overage",)),
            WebhookSettings("https://user:pw@crm.example/in", "CRM_SECRET"),
        )
    )
    env = {"OPS_SECRET": f"{current} {previous}", "CRM_SECRET": current}
    ops, crm = endpoints_from_settings(alerts, env)
    assert [s.value for s in ops.secrets] == [current, previous]
    assert ops.accepts("overage") and not ops.accepts("threshold") and crm.accepts("anomaly")
    assert ops.display == "https://ops.example/hooks" and crm.display == "https://crm.example/in"
    assert current not in repr(ops) and len(ops.id) == 16
    ops_only, held = endpoints_from_settings(alerts, {"OPS_SECRET": current})
    assert ops_only.held is None and held.secrets == ()  # the worker runs; nothing unsigned
    assert held.held is not None
    assert re.fullmatch(r"alerts.webhooks\[1\].secret_env: .*CRM_SECRET unset.*", held.held)
    with pytest.raises(ValueError, match="no signing secret"):
        Endpoint("https://x", secrets=())
    with pytest.raises(ValueError, match=r"alerts.webhooks\[0\]") as info:
        endpoints_from_settings(alerts, {"OPS_SECRET": "whsec_%%%", "CRM_SECRET": current})
    assert "%%%" not in str(info.value)
    with pytest.raises(ValueError, match="secret_env: a signing secret is required"):
        endpoints_from_settings(AlertSettings(webhooks=(WebhookSettings("https://x"),)), {})
    with pytest.raises(ValueError, match="unknown alert kinds"):
        Endpoint("https://x", secrets=ops.secrets, kinds=frozenset({"thresholds"}))


def test_notifier_settings() -> None:
    s = NotifierSettings.from_alert_settings(AlertSettings(digest_window_s=30), max_attempts=3)
    assert (s.digest_window_s, s.max_attempts) == (30.0, 3)
    for bad in (
        {"max_attempts": 0},
        {"timeout_s": 0},
        {"backoff_base_ms": 10, "backoff_max_ms": 1},
    ):
        with pytest.raises(ValueError):
            NotifierSettings(**bad)  # type: ignore[arg-type]
