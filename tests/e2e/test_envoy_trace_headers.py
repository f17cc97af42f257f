"""Generated HTTP-mode bootstraps carry the W3C trace context to the authorizer, and with
--otel-collector Envoy exports its spans as OTLP/HTTP to the collector's /v1/traces."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gatekeeper.envoyconfig import Address
from tests.e2e.harness import Upstream, client, free_port, front_proxy, wait_for

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@dataclass
class Recorder:
    """An aiohttp server answering 200 to everything and keeping each request's headers."""

    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    port: int = 0

    async def _handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.seen.append((request.path, {k.lower(): v for k, v in request.headers.items()}))
        return web.Response(status=200)


@contextlib.asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder(port=free_port())
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", rec.port).start()
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("tracing", [False, True])
async def test_trace_context_reaches_the_authorizer_and_spans_the_collector(
    tracing: bool,
) -> None:
    upstream = await Upstream().start()
    try:
        async with recorder() as authorizer, recorder() as collector:
            otel = Address("127.0.0.1", collector.port) if tracing else None
            with front_proxy(
                "http",
                grpc_port=1,  # no settlement here: nothing connects to it
                authz_http_port=authorizer.port,
                upstream_port=upstream.port,
                settlement=False,
                otel_collector=otel,
            ) as envoy:
                headers = {"traceparent": TRACEPARENT, "x-api-key": "k"}
                for _ in range(6):  # Envoy's tracer exports once 5 spans are buffered
                    async with client() as s, s.get(envoy.url + "/v1/models", headers=headers) as r:
                        assert r.status == 200
                _, seen = authorizer.seen[0]
                assert seen["traceparent"].split("-")[1] == TRACE_ID  # the client's trace
                if not tracing:
                    assert seen["traceparent"] == TRACEPARENT
                    return
                assert await wait_for(lambda: bool(collector.seen), timeout_s=10)
                path, exported = collector.seen[0]
                assert path == "/v1/traces"
                assert exported["content-type"] == "application/x-protobuf"
                export = ExportTraceServiceRequest.FromString(collector.bodies[0])
                spans = [
                    span
                    for resource in export.resource_spans
                    for scope in resource.scope_spans
                    for span in scope.spans
                ]
                assert spans and {span.trace_id.hex() for span in spans} == {TRACE_ID}
    finally:
        await upstream.stop()
