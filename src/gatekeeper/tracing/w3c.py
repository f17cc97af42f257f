"""W3C Trace Context (`traceparent`, `tracestate`): parse what Envoy sends, write our own.

traceparent = version "-" trace-id (32 hex) "-" parent-id (16 hex) "-" flags (2 hex), lower
case; an all-zero id is invalid, version ff is invalid, and a later version may append fields
after the four (read as version 00). Anything else is ignored: the span starts a new trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.span import TraceState

__all__ = ["TRACEPARENT", "TRACESTATE", "format_traceparent", "from_headers", "from_pairs", "parse"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_HEX = frozenset("0123456789abcdef")


def parse(traceparent: str, tracestate: str | None = None) -> SpanContext | None:
    """The remote SpanContext a traceparent names, or None when it is malformed."""
    value = traceparent.strip()
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version, trace_hex, span_hex, flags_hex = value[:2], value[3:35], value[36:52], value[53:55]
    if not _HEX.issuperset(value[:2] + trace_hex + span_hex + flags_hex) or version == "ff":
        return None
    if len(value) > 55 and (version == "00" or value[55] != "-"):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    state = TraceState.from_header([tracestate]) if tracestate else TraceState()
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(flags_hex, 16) & 0x01),
        trace_state=state,
    )  # fmt: skip


def from_headers(headers: Mapping[str, str]) -> SpanContext | None:
    """The parent named by lower-case `traceparent`/`tracestate` headers, if any."""
    traceparent = headers.get(TRACEPARENT)
    if not traceparent:
        return None
    return parse(traceparent, headers.get(TRACESTATE))


def from_pairs(pairs: Iterable[tuple[str, str | bytes]]) -> SpanContext | None:
    """The parent named in gRPC metadata (key, value) pairs, if any."""
    traceparent = tracestate = None
    for key, value in pairs:
        name = key.lower()
        if name in (TRACEPARENT, TRACESTATE):
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if name == TRACEPARENT:
                traceparent = text
            else:
                tracestate = text
    return parse(traceparent, tracestate) if traceparent else None


def format_traceparent(context: SpanContext) -> str:
    """`00-<trace id>-<span id>-<flags>` of `context`."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
