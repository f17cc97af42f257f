"""A lean gRPC server: HTTP/2 (RFC 9113) on asyncio Protocols, serving the handlers the
generated `add_*Servicer_to_server` functions register, as grpc.aio's server does.

Why: a grpc.aio server spends ~140-280 µs of CPU on a no-op unary call on this project's
2-core reference machine (its core's I/O threads hand every event to the asyncio loop through a
poller thread); Envoy's ext_authz and rate limit filters make one such call per request. Here a
call is parsed and answered on the event loop itself: frames in, one task per call, answers of
one loop iteration written with one send.

Scope: what gRPC clients (Envoy, grpcio, grpcurl) need of a plaintext (h2c, prior knowledge)
server: every call kind, flow control both ways, HPACK with the dynamic table, deadlines
(grpc-timeout, reported by the context), cancellation (RST_STREAM), PING, SETTINGS, GOAWAY
on graceful stop, gzip/deflate request messages. Not served: TLS, server push, HTTP/1.1
upgrade, compressed answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from gatekeeper.net.guards import NetStats, Sweeper
from gatekeeper.net.h2.connection import H2Connection
from gatekeeper.net.limits import NetLimits

__all__ = ["LeanGrpcServer"]


@dataclass(frozen=True, slots=True)
class _CallDetails:
    """grpc.HandlerCallDetails for generic handlers."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class LeanGrpcServer:
    """A grpc.aio.Server stand-in: register handlers with the generated
    `add_*Servicer_to_server(servicer, server)`, `add_insecure_port`, `start`, `stop`."""

    def __init__(self, *, reuse_port: bool = False, limits: NetLimits | None = None) -> None:
        self.reuse_port = reuse_port
        self.limits = limits or NetLimits()
        self.stats = NetStats()  # what clients made it refuse, by reason
        self.connections: set[H2Connection] = set()
        self.sweeper = Sweeper(self.limits, lambda: self.connections)
        self.stopping = False
        self._methods: dict[str, grpc.RpcMethodHandler] = {}
        self._generic: list[grpc.GenericRpcHandler] = []
        self._sockets: list[socket.socket] = []
        self._servers: list[asyncio.Server] = []
        self.handler_failures: dict[str, int] = {}  # method path -> handlers that raised

    # registration (the generated code calls both)
    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in handlers.items():
            self._methods[f"/{service}/{name}"] = handler

    def lookup(
        self, path: str, metadata: tuple[tuple[str, str], ...]
    ) -> grpc.RpcMethodHandler | None:
        handler = self._methods.get(path)
        if handler is not None:
            return handler
        details = _CallDetails(path, metadata)
        for generic in self._generic:
            found = generic.service(details)
            if found is not None:
                return found
        return None

    def handler_failed(self, method: str) -> None:
        self.handler_failures[method] = self.handler_failures.get(method, 0) + 1

    # serving
    def add_insecure_port(self, address: str) -> int:
        """Bind `address` ("host:port", "[v6]:port"; port 0 = any free) now, on every address
        the host resolves to (as grpc.aio does: "localhost" is 127.0.0.1 and ::1); returns the
        port. Raises OSError naming the address when a port is taken or nothing could be bound
        (an address family the machine lacks is skipped)."""
        host, _, port_text = address.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        try:
            port = int(port_text)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot bind gRPC on {address}: {exc}") from exc
        bound: list[socket.socket] = []
        skipped: list[OSError] = []
        # with an IPv4 address beside it, an IPv6 socket takes IPv6 only (else "[::]" is both)
        v6only = any(info[0] == socket.AF_INET for info in infos)
        for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
            if bound:  # every address on the port the first one got
                sockaddr = (sockaddr[0], bound[0].getsockname()[1], *sockaddr[2:])
            try:
                bound.append(self._bind(family, kind, proto, sockaddr, v6only=v6only))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    for sock in bound:
                        sock.close()
                    raise OSError(f"cannot bind gRPC on {address}: {exc}") from exc
                skipped.append(exc)
        if not bound:
            raise OSError(
                f"cannot bind gRPC on {address}: {skipped[0] if skipped else 'no address'}"
            )
        self._sockets.extend(bound)
        return int(bound[0].getsockname()[1])

    def _bind(
        self, family: int, kind: int, proto: int, sockaddr: tuple[Any, ...], *, v6only: bool
    ) -> socket.socket:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
            sock.bind(sockaddr)
        except OSError:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            sock.listen(1024)
            server = await loop.create_server(lambda: H2Connection(self), sock=sock)
            self._servers.append(server)
        self.sweeper.start()

    async def stop(self, grace: float | None) -> None:
        """Stop taking connections and streams; calls in progress finish within `grace` seconds,
        then are cancelled."""
        self.stopping = True
        for server in self._servers:
            server.close()
        await self.sweeper.stop()
        connections = list(self.connections)
        for conn in connections:
            conn.go_away()
        if grace and connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(c.idle.wait() for c in connections)), timeout=grace
                )
        for conn in list(self.connections):
            for stream in list(conn.streams.values()):
                stream.reset()
            conn.close()
        for server in self._servers:  # bounded: a stuck close must not hang the shutdown
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)
        self._servers.clear()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
