"""OpenTelemetry tracing of decisions, their Redis call, billing commits and webhooks.

Off unless an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT and friends): then the
composition roots build no `Tracing` at all and the decision path runs exactly as untraced
(see README "Tracing"). On: spans are exported by gatekeeper's own OTLP/HTTP exporter.
"""

from gatekeeper.tracing.config import TracingConfig, TracingConfigError, parse_tracing_env
from gatekeeper.tracing.exporter import OtlpHttpSpanExporter
from gatekeeper.tracing.tracer import (
    ATTR_CUSTOMER,
    ATTR_DECISION_ID,
    ATTR_FEATURES,
    ATTR_OUTCOME,
    DecisionSpan,
    RedisSpan,
    Tracing,
    end_span,
)
from gatekeeper.tracing.w3c import format_traceparent, from_headers, from_pairs

__all__ = [
    "ATTR_CUSTOMER",
    "ATTR_DECISION_ID",
    "ATTR_FEATURES",
    "ATTR_OUTCOME",
    "DecisionSpan",
    "OtlpHttpSpanExporter",
    "RedisSpan",
    "Tracing",
    "TracingConfig",
    "TracingConfigError",
    "end_span",
    "format_traceparent",
    "from_headers",
    "from_pairs",
    "parse_tracing_env",
]
