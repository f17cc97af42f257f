"""OtlpHttpSpanExporter against a stdlib HTTP server: what it POSTs, retries, gives up."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext

from gatekeeper.tracing import OtlpHttpSpanExporter, parse_tracing_env


class Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.answers: list[int] = []  # statuses to answer, in order (then 200)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.requests.append(
            (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        status = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _span() -> ReadableSpan:
    return ReadableSpan(
        "decide", context=SpanContext(7, 9, False), resource=Resource({"service.name": "gk"}),
        start_time=1, end_time=2,
    )  # fmt: skip


def _exporter(collector: Collector, **env: str) -> OtlpHttpSpanExporter:
    config = parse_tracing_env({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, **env})
    assert config is not None
    return OtlpHttpSpanExporter(config)


def test_posts_protobuf_to_v1_traces_with_the_configured_headers(collector: Collector) -> None:
    exporter = _exporter(collector, OTEL_EXPORTER_OTLP_HEADERS="x-tenant=t1,authorization=k")
    assert exporter.export([_span()]) is SpanExportResult.SUCCESS
    ((path, headers, body),) = collector.requests
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    assert (headers["x-tenant"], headers["authorization"]) == ("t1", "k")
    span = ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans[0]
    assert (span.name, span.end_time_unix_nano) == ("decide", 2)
    assert exporter.exported == 1


def test_gzip_and_json(collector: Collector) -> None:
    exporter = _exporter(
        collector, OTEL_EXPORTER_OTLP_COMPRESSION="gzip", OTEL_EXPORTER_OTLP_PROTOCOL="http/json"
    )
    assert exporter.export([_span()]) is SpanExportResult.SUCCESS
    ((_, headers, body),) = collector.requests
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/json"
    sent = json.loads(gzip.decompress(body))
    assert sent["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] == f"{9:016x}"


def test_retries_a_retryable_answer_then_succeeds(collector: Collector) -> None:
    collector.answers = [503, 429]
    assert _exporter(collector).export([_span()]) is SpanExportResult.SUCCESS
    assert len(collector.requests) == 3


def test_a_rejected_batch_is_dropped_at_once(collector: Collector) -> None:
    collector.answers = [400]
    exporter = _exporter(collector)
    assert exporter.export([_span()]) is SpanExportResult.FAILURE
    assert len(collector.requests) == 1
    assert exporter.failed == 1


def test_an_unreachable_collector_costs_at_most_the_timeout() -> None:
    config = parse_tracing_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "400"}
    )
    assert config is not None
    started = time.monotonic()
    assert OtlpHttpSpanExporter(config).export([_span()]) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 2.0


def test_after_shutdown_nothing_is_sent(collector: Collector) -> None:
    exporter = _exporter(collector)
    exporter.shutdown()
    assert exporter.export([_span()]) is SpanExportResult.FAILURE
    assert collector.requests == []
