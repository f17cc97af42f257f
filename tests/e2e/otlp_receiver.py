"""An OTLP/HTTP trace receiver for tests.

`OtlpReceiver` accepts `POST /v1/traces` (protobuf, optionally gzip) from Envoy's
OpenTelemetry tracer and from gatekeeper's exporter alike, keeps the raw bodies and decodes
them with opentelemetry-proto (the real package: what the decoding accepts, a collector does).
Envoy's side of tracing comes from `gatekeeper envoy-config --otel-collector`.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.harness import free_port

MAX_BODIES = 10_000  # a runaway exporter cannot make the test hold unbounded memory


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    span: Span

    def attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kv in self.span.attributes:
            which = kv.value.WhichOneof("value")
            if which == "array_value":
                out[kv.key] = [getattr(v, v.WhichOneof("value") or "string_value")
                               for v in kv.value.array_value.values]  # fmt: skip
            else:
                out[kv.key] = getattr(kv.value, which) if which else None
        return out


@dataclass
class OtlpReceiver:
    port: int = 0
    bodies: list[bytes] = field(default_factory=list)  # as received (decompressed)
    content_types: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if len(self.bodies) < MAX_BODIES:
            self.bodies.append(body)
            self.content_types.append(request.headers.get("content-type", ""))
        ExportTraceServiceRequest.FromString(body)  # a body that does not decode: a 500
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def start(self) -> OtlpReceiver:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self) -> list[ReceivedSpan]:
        found: list[ReceivedSpan] = []
        for body in self.bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for rs in request.resource_spans:
                service = next(
                    (a.value.string_value for a in rs.resource.attributes
                     if a.key == "service.name"), "",
                )  # fmt: skip
                for ss in rs.scope_spans:
                    found.extend(ReceivedSpan(service, span) for span in ss.spans)
        return found
