"""No-op authorizers: the transport's own ceiling, for the bench's "Envoy + no-op" baselines.

Same servers as `gatekeeper serve`, no engine: the HTTP mode uses the fast path's own
`AuthzHttpServer` class with a handler that admits everything; the gRPC mode is a grpc.aio
server whose `Check` and `ShouldRateLimit` return a constant OK (issue 6's baseline), and the
same servicers on gatekeeper's lean gRPC server (`--lean-grpc-port`: the ceiling of the
transport `serve` uses by default). Run as its own process (like serve), with uvloop when
installed:

    python -m gatekeeper.benchmark.noop --http-port 19192 --grpc-port 19191
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as authz
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.rpc import code_pb2, status_pb2

from gatekeeper.edge import Answer, EdgeRequest
from gatekeeper.http.authz_server import AuthzHttpServer
from gatekeeper.net.grpc_server import LeanGrpcServer

__all__ = ["NoopAuthorization", "NoopRateLimit", "main", "serve_noop"]

READY = "noop authorizers ready"
_ALLOW = Answer(status=200, outcome="allowed")
_CHECK_OK = authz.CheckResponse(
    status=status_pb2.Status(code=code_pb2.OK), ok_response=authz.OkHttpResponse()
)
_RLS_OK = rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK)


async def _allow(_request: EdgeRequest) -> Answer:
    return _ALLOW


class NoopAuthorization(authz_grpc.AuthorizationServicer):  # type: ignore[misc]
    async def Check(
        self, request: authz.CheckRequest, context: grpc.aio.ServicerContext
    ) -> authz.CheckResponse:
        return _CHECK_OK


class NoopRateLimit(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> rls_pb2.RateLimitResponse:
        return _RLS_OK


async def serve_noop(
    host: str, http_port: int, grpc_port: int, stop: asyncio.Event, lean_grpc_port: int = 0
) -> None:
    """Serve the no-op authorizers until `stop` is set (the lean gRPC one if given a port)."""
    http = AuthzHttpServer(_allow)
    await http.start(host, http_port)
    server = grpc.aio.server()
    lean = LeanGrpcServer()
    for target in (server, lean):
        authz_grpc.add_AuthorizationServicer_to_server(NoopAuthorization(), target)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(NoopRateLimit(), target)
    if server.add_insecure_port(f"{host}:{grpc_port}") == 0:
        raise OSError(f"cannot bind gRPC on {host}:{grpc_port}")
    await server.start()
    if lean_grpc_port:
        lean.add_insecure_port(f"{host}:{lean_grpc_port}")
        await lean.start()
    os.write(sys.stdout.fileno(), f"{READY}\n".encode())
    try:
        await stop.wait()
    finally:
        await http.stop(1.0)
        await server.stop(1.0)
        await lean.stop(1.0)


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve_noop(args.host, args.http_port, args.grpc_port, stop, args.lean_grpc_port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="no-op ext_authz / rate limit servers")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--lean-grpc-port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop  # as gatekeeper serve does

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
