"""Forwarders: usage events leave gatekeeper as CloudEvents 1.0 over HTTP (DESIGN.md §2, §6).

`UsageForwarder` reads the partition usage streams in its own consumer group and hands
batches to an `HttpForwarder`, acking only what the receiver accepted (at least once, stable
CloudEvent ids). `ForwarderSettings` configures both.
"""

from gatekeeper.forward.cloudevent import (
    BATCH_CONTENT_TYPE,
    CONTENT_TYPE,
    USAGE_EVENT_TYPE,
    JsonObject,
    JsonValue,
    rfc3339,
    to_cloudevent,
)
from gatekeeper.forward.consumer import GROUP, EventSender, UsageForwarder
from gatekeeper.forward.http import (
    DeadLetter,
    DeadLetterSink,
    ForwardUnavailable,
    HttpForwarder,
    SendResult,
    parse_retry_after,
)
from gatekeeper.forward.settings import ForwarderSettings

__all__ = [
    "BATCH_CONTENT_TYPE",
    "CONTENT_TYPE",
    "GROUP",
    "USAGE_EVENT_TYPE",
    "DeadLetter",
    "DeadLetterSink",
    "EventSender",
    "ForwardUnavailable",
    "ForwarderSettings",
    "HttpForwarder",
    "JsonObject",
    "JsonValue",
    "SendResult",
    "UsageForwarder",
    "parse_retry_after",
    "rfc3339",
    "to_cloudevent",
]
