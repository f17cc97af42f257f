"""gatekeeper's hand-written OTLP encoding, decoded by the real opentelemetry-proto package."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from gatekeeper.tracing.otlp import encode_json, encode_protobuf
from gatekeeper.tracing.protobuf import varint

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
KEYS = st.text("abcdefghij.", min_size=1, max_size=8)
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=False)
SCALAR = st.one_of(TEXT, st.booleans(), INT64, FLOATS)
VALUE = st.one_of(
    SCALAR,
    st.lists(TEXT, max_size=3).map(tuple),
    st.lists(INT64, max_size=3).map(tuple),
    st.lists(st.booleans(), max_size=3).map(tuple),
)
ATTRS = st.dictionaries(KEYS, VALUE, max_size=4)
IDS = st.tuples(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1))
STATE = st.lists(st.tuples(st.sampled_from(["a", "vendor", "k9"]), st.sampled_from(["1", "x"])),
                 max_size=2, unique_by=lambda kv: kv[0]).map(TraceState)  # fmt: skip
TIMES = st.integers(0, 2**64 - 1)


@st.composite
def contexts(draw: st.DrawFn, remote: bool | None = None) -> SpanContext:
    trace_id, span_id = draw(IDS)
    return SpanContext(
        trace_id, span_id,
        is_remote=draw(st.booleans()) if remote is None else remote,
        trace_flags=TraceFlags(draw(st.sampled_from([0, 1]))), trace_state=draw(STATE),
    )  # fmt: skip


RESOURCES = [Resource({"service.name": "gatekeeper", "n": 1}), Resource({"service.name": "w"})]
SCOPES = [InstrumentationScope("gatekeeper", "1.2.3"), InstrumentationScope("other")]


@st.composite
def spans(draw: st.DrawFn) -> ReadableSpan:
    parent = draw(st.none() | contexts())
    return ReadableSpan(
        name=draw(TEXT),
        context=draw(contexts(remote=False)),
        parent=parent,
        resource=draw(st.sampled_from(RESOURCES)),
        attributes=draw(ATTRS),
        events=[
            Event(draw(TEXT), draw(ATTRS), timestamp=draw(TIMES))
            for _ in range(draw(st.integers(0, 2)))
        ],
        links=[Link(draw(contexts()), draw(ATTRS)) for _ in range(draw(st.integers(0, 2)))],
        kind=draw(st.sampled_from(list(SpanKind))),
        status=draw(
            st.sampled_from(
                [
                    Status(StatusCode.UNSET),
                    Status(StatusCode.OK),
                    Status(StatusCode.ERROR, "boom é"),
                ]
            )
        ),
        start_time=draw(TIMES),
        end_time=draw(TIMES),
        instrumentation_scope=draw(st.sampled_from(SCOPES)),
    )


def _py(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_py(v) for v in value.array_value.values)
    return getattr(value, which) if which else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _py(kv.value) for kv in kvs}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and a == b
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def _same_attrs(decoded: dict[str, Any], sent: Any) -> bool:
    sent = dict(sent or {})
    return decoded.keys() == sent.keys() and all(_same(sent[k], decoded[k]) for k in sent)


def _flags(ctx: SpanContext, remote: bool) -> int:
    return int(ctx.trace_flags) | 0x100 | (0x200 if remote else 0)


def _ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


@settings(max_examples=100, deadline=None)
@given(st.lists(spans(), max_size=5, unique_by=_ids))
def test_protobuf_round_trips_through_opentelemetry_proto(sent: list[ReadableSpan]) -> None:
    request = ExportTraceServiceRequest.FromString(encode_protobuf(sent))
    decoded = []
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            decoded += [(resource, ss.scope, span) for span in ss.spans]
    assert len(decoded) == len(sent)
    by_id = {_ids(s): s for s in sent}
    for resource, scope, span in decoded:
        s = by_id[(int.from_bytes(span.trace_id, "big"), int.from_bytes(span.span_id, "big"))]
        ctx = s.context
        assert ctx is not None and s.instrumentation_scope is not None
        assert _same_attrs(resource, s.resource.attributes)
        assert (scope.name, scope.version) == (s.instrumentation_scope.name,
                                               s.instrumentation_scope.version or "")  # fmt: skip
        assert span.name == s.name
        assert span.trace_state == ctx.trace_state.to_header()
        assert span.parent_span_id == (s.parent.span_id.to_bytes(8, "big") if s.parent else b"")
        assert span.kind == s.kind.value + 1
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (s.start_time, s.end_time)
        assert _same_attrs(_attrs(span.attributes), s.attributes)
        assert [(e.name, e.time_unix_nano) for e in span.events] == [
            (e.name, e.timestamp) for e in s.events
        ]
        assert all(_same_attrs(_attrs(d.attributes), e.attributes)
                   for d, e in zip(span.events, s.events, strict=True))  # fmt: skip
        assert len(span.links) == len(s.links)
        for d, link in zip(span.links, s.links, strict=True):
            assert int.from_bytes(d.trace_id, "big") == link.context.trace_id
            assert int.from_bytes(d.span_id, "big") == link.context.span_id
            assert d.trace_state == link.context.trace_state.to_header()
            assert d.flags == _flags(link.context, link.context.is_remote)
            assert _same_attrs(_attrs(d.attributes), link.attributes)
        assert span.status.code == s.status.status_code.value
        assert span.status.message == (s.status.description or "")
        assert span.flags == _flags(ctx, s.parent is not None and s.parent.is_remote)


@settings(max_examples=30, deadline=None)
@given(st.lists(spans(), min_size=1, max_size=4, unique_by=_ids))
def test_json_has_hex_ids_and_the_same_spans(sent: list[ReadableSpan]) -> None:
    body = json.loads(encode_json(sent))
    found = [
        span for rs in body["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]
    ]
    assert sorted(s["spanId"] for s in found) == sorted(
        f"{s.context.span_id:016x}"
        for s in sent  # type: ignore[union-attr]
    )
    assert all(len(s["traceId"]) == 32 for s in found)


@given(INT64)
def test_varint_matches_protobuf(value: int) -> None:
    """A negative int64 is its 10-byte two's complement, as protobuf writes it."""
    encoded = varint(value)
    assert AnyValue.FromString(b"\x18" + encoded).int_value == value


def test_empty_string_and_zero_values_are_present() -> None:
    span = ReadableSpan(
        "s", context=SpanContext(1, 2, False), attributes={"e": "", "z": 0, "f": False, "d": 0.0},
        resource=RESOURCES[0], instrumentation_scope=SCOPES[0],
    )  # fmt: skip
    request = ExportTraceServiceRequest.FromString(encode_protobuf([span]))
    decoded = request.resource_spans[0].scope_spans[0].spans[0]
    assert {kv.key: kv.value.WhichOneof("value") for kv in decoded.attributes} == {
        "e": "string_value", "z": "int_value", "f": "bool_value", "d": "double_value",
    }  # fmt: skip
