"""Finished SDK spans as an OTLP `ExportTraceServiceRequest`: protobuf bytes or OTLP/JSON.

Field numbers from opentelemetry-proto (`collector/trace/v1/trace_service.proto`,
`trace/v1/trace.proto`, `common/v1/common.proto`, `resource/v1/resource.proto`); the tests
decode what this writes with the real opentelemetry-proto package. Spans are grouped by
resource, then by instrumentation scope, in first-seen order.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext

from gatekeeper.tracing.protobuf import Writer

__all__ = ["KeyValueCache", "encode_json", "encode_protobuf"]

# Span.flags / Link.flags: the W3C trace flags in bits 0-7, plus whether the parent (or the
# linked span) is remote (SpanFlags in trace.proto)
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200

_Grouped = list[tuple[Resource, list[tuple[InstrumentationScope | None, list[ReadableSpan]]]]]


def _group(spans: Sequence[ReadableSpan]) -> _Grouped:
    by_resource: dict[int, tuple[Resource, dict[Any, tuple[Any, list[ReadableSpan]]]]] = {}
    for span in spans:
        resource = span.resource
        _, scopes = by_resource.setdefault(id(resource), (resource, {}))
        scope = span.instrumentation_scope
        key = None if scope is None else (scope.name, scope.version, scope.schema_url)
        scopes.setdefault(key, (scope, []))[1].append(span)
    return [(resource, list(scopes.values())) for resource, scopes in by_resource.values()]


def _flags(context: SpanContext | None, remote: bool) -> int:
    flags = int(context.trace_flags) if context is not None else 0
    return flags | _HAS_IS_REMOTE | (_IS_REMOTE if remote else 0)


# -- protobuf ------------------------------------------------------------------------------


def _any_value(value: object) -> bytes:
    w = Writer()
    if isinstance(value, bool):  # before int: a bool is an int
        w.varint(2, int(value), always=True)
    elif isinstance(value, int):
        w.varint(3, value, always=True)
    elif isinstance(value, float):
        w.double(4, value, always=True)
    elif isinstance(value, bytes):
        w.message(7, value)
    elif isinstance(value, Mapping):
        w.message(6, _key_values(value))
    elif isinstance(value, Sequence) and not isinstance(value, str):
        array = Writer()
        for item in value:
            array.message(1, _any_value(item))
        w.message(5, bytes(array))
    else:
        w.message(1, str(value).encode("utf-8", "replace"))
    return bytes(w)


KeyValueCache = dict[tuple[str, type, object], bytes]
_KV_CACHE_MAX = 4096  # encoded KeyValues kept (outcomes, plans, db.*: they repeat)


def _key_value(key: str, value: object, cache: KeyValueCache) -> bytes:
    hashable = isinstance(value, str | bool | int | float)
    if hashable and (found := cache.get((key, type(value), value))) is not None:
        return found
    kv = Writer()
    kv.string(1, key)
    kv.message(2, _any_value(value))
    encoded = bytes(kv)
    if hashable:
        if len(cache) >= _KV_CACHE_MAX:
            cache.clear()
        cache[key, type(value), value] = encoded
    return encoded


def _key_values(
    attributes: Mapping[str, object] | None,
    number: int = 1,
    cache: KeyValueCache | None = None,
) -> bytes:
    """Repeated KeyValue (as field `number` of the enclosing message); `cache` keeps the
    encoding of scalar attributes across calls (bounded)."""
    w = Writer()
    memo: KeyValueCache = {} if cache is None else cache
    for key, value in (attributes or {}).items():
        w.message(number, _key_value(key, value, memo))
    return bytes(w)


def _link(link: Link) -> bytes:
    ctx = link.context
    w = Writer()
    w.bytes_(1, ctx.trace_id.to_bytes(16, "big"))
    w.bytes_(2, ctx.span_id.to_bytes(8, "big"))
    w.string(3, ctx.trace_state.to_header() if ctx.trace_state else "")
    w.raw(_key_values(link.attributes, 4))
    w.varint(5, getattr(link, "dropped_attributes", 0))
    w.fixed32(6, _flags(ctx, ctx.is_remote))
    return bytes(w)


def _span(span: ReadableSpan, cache: KeyValueCache) -> bytes:
    ctx = span.context
    assert ctx is not None
    parent = span.parent
    w = Writer()
    w.bytes_(1, ctx.trace_id.to_bytes(16, "big"))
    w.bytes_(2, ctx.span_id.to_bytes(8, "big"))
    w.string(3, ctx.trace_state.to_header() if ctx.trace_state else "")
    if parent is not None:
        w.bytes_(4, parent.span_id.to_bytes(8, "big"))
    w.string(5, span.name)
    w.varint(6, span.kind.value + 1)  # SpanKind: the SDK's INTERNAL=0, OTLP's INTERNAL=1
    w.fixed64(7, span.start_time or 0)
    w.fixed64(8, span.end_time or 0)
    w.raw(_key_values(span.attributes, 9, cache))
    w.varint(10, span.dropped_attributes)
    for event in span.events:
        e = Writer()
        e.fixed64(1, event.timestamp)
        e.string(2, event.name)
        e.raw(_key_values(event.attributes, 3))
        w.message(11, bytes(e))
    w.varint(12, span.dropped_events)
    for link in span.links:
        w.message(13, _link(link))
    w.varint(14, span.dropped_links)
    status = Writer()
    status.string(2, span.status.description or "")
    status.varint(3, span.status.status_code.value)  # UNSET 0, OK 1, ERROR 2 in both
    w.message(15, bytes(status))
    w.fixed32(16, _flags(ctx, parent is not None and parent.is_remote))
    return bytes(w)


def _scope(scope: InstrumentationScope | None) -> bytes:
    w = Writer()
    if scope is not None:
        w.string(1, scope.name)
        w.string(2, scope.version or "")
        w.raw(_key_values(scope.attributes, 3))
    return bytes(w)


def encode_protobuf(spans: Sequence[ReadableSpan], cache: KeyValueCache | None = None) -> bytes:
    """`ExportTraceServiceRequest` bytes (Content-Type: application/x-protobuf). `cache`: a
    dict the caller keeps across calls, holding encoded scalar span attributes (bounded)."""
    cache = {} if cache is None else cache
    request = Writer()
    for resource, scopes in _group(spans):
        rs = Writer()
        res = Writer()
        res.raw(_key_values(resource.attributes, 1))
        rs.message(1, bytes(res))
        for scope, members in scopes:
            ss = Writer()
            ss.message(1, _scope(scope))
            for span in members:
                ss.message(2, _span(span, cache))
            ss.string(3, (scope.schema_url or "") if scope is not None else "")
            rs.message(2, bytes(ss))
        rs.string(3, resource.schema_url or "")
        request.message(1, bytes(rs))
    return bytes(request)


# -- OTLP/JSON (the protobuf JSON mapping, with ids as hex: OTLP specification) ----------


def _json_value(value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # int64 as a JSON string
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": _json_attributes(value)}}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return {"arrayValue": {"values": [_json_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _json_attributes(attributes: Mapping[str, object] | None) -> list[dict[str, object]]:
    return [{"key": k, "value": _json_value(v)} for k, v in (attributes or {}).items()]


def _json_span(span: ReadableSpan) -> dict[str, object]:
    ctx = span.context
    assert ctx is not None
    parent = span.parent
    out: dict[str, object] = {
        "traceId": f"{ctx.trace_id:032x}",
        "spanId": f"{ctx.span_id:016x}",
        "traceState": ctx.trace_state.to_header() if ctx.trace_state else "",
        "parentSpanId": f"{parent.span_id:016x}" if parent is not None else "",
        "flags": _flags(ctx, parent is not None and parent.is_remote),
        "name": span.name,
        "kind": span.kind.value + 1,
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": _json_attributes(span.attributes),
        "droppedAttributesCount": span.dropped_attributes,
        "events": [
            {
                "timeUnixNano": str(e.timestamp),
                "name": e.name,
                "attributes": _json_attributes(e.attributes),
            }
            for e in span.events
        ],
        "droppedEventsCount": span.dropped_events,
        "links": [
            {
                "traceId": f"{link.context.trace_id:032x}",
                "spanId": f"{link.context.span_id:016x}",
                "traceState": link.context.trace_state.to_header()
                if link.context.trace_state
                else "",
                "attributes": _json_attributes(link.attributes),
                "flags": _flags(link.context, link.context.is_remote),
            }
            for link in span.links
        ],
        "droppedLinksCount": span.dropped_links,
        "status": {
            "message": span.status.description or "",
            "code": span.status.status_code.value,
        },
    }
    return out


def encode_json(spans: Sequence[ReadableSpan]) -> bytes:
    """`ExportTraceServiceRequest` as OTLP/JSON (Content-Type: application/json)."""
    resource_spans = []
    for resource, scopes in _group(spans):
        scope_spans = []
        for scope, members in scopes:
            scope_spans.append(
                {
                    "scope": {
                        "name": scope.name if scope else "",
                        "version": (scope.version or "") if scope else "",
                        "attributes": _json_attributes(scope.attributes if scope else None),
                    },
                    "spans": [_json_span(s) for s in members],
                    "schemaUrl": (scope.schema_url or "") if scope else "",
                }
            )
        resource_spans.append(
            {
                "resource": {"attributes": _json_attributes(resource.attributes)},
                "scopeSpans": scope_spans,
                "schemaUrl": resource.schema_url or "",
            }
        )
    return json.dumps({"resourceSpans": resource_spans}, separators=(",", ":")).encode()
