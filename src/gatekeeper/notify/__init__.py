"""Alerts out: Standard Webhooks-signed deliveries without alert fatigue (DESIGN.md §2).

`AlertNotifier` reads the partition alert streams (consumer group `gatekeeper-notifier`) and
delivers each alert, or a customer's digest, to the endpoints that want it, with retries,
a dead letter, per-endpoint dedupe, mutes and spacing. `ForecastAlerter` adds forecast and
anomaly alerts to the same streams. `verify` is the receiver-side check. Schema: README.md.
"""

from gatekeeper.notify.forecast_alerts import ForecastAlerter, UsageSeries
from gatekeeper.notify.http import AttemptResult, WebhookClient, backoff_s
from gatekeeper.notify.log import (
    DeliveryAttempt,
    DeliveryLog,
    DeliveryOutcome,
    MemoryDeliveryLog,
    RedisDeliveryLog,
)
from gatekeeper.notify.notifier import GROUP, AlertNotifier
from gatekeeper.notify.payload import (
    ALERT_TYPE_PREFIX,
    DIGEST_TYPE,
    PAYLOAD_VERSION,
    alert_payload,
    digest_id,
    digest_payload,
    encode,
)
from gatekeeper.notify.settings import Endpoint, NotifierSettings, endpoints_from_settings
from gatekeeper.notify.signing import (
    SECRET_PREFIX,
    WebhookVerificationError,
    decode_secret,
    generate_secret,
    parse_secrets,
    sign,
    verify,
    webhook_headers,
)
from gatekeeper.notify.state import AlertMutes, DeadLetterEntry

__all__ = [
    "ALERT_TYPE_PREFIX",
    "DIGEST_TYPE",
    "GROUP",
    "PAYLOAD_VERSION",
    "SECRET_PREFIX",
    "AlertMutes",
    "AlertNotifier",
    "AttemptResult",
    "DeadLetterEntry",
    "DeliveryAttempt",
    "DeliveryLog",
    "DeliveryOutcome",
    "Endpoint",
    "ForecastAlerter",
    "MemoryDeliveryLog",
    "NotifierSettings",
    "RedisDeliveryLog",
    "UsageSeries",
    "WebhookClient",
    "WebhookVerificationError",
    "alert_payload",
    "backoff_s",
    "decode_secret",
    "digest_id",
    "digest_payload",
    "encode",
    "endpoints_from_settings",
    "generate_secret",
    "parse_secrets",
    "sign",
    "verify",
    "webhook_headers",
]
