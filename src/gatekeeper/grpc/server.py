"""The gRPC server (9191): ext_authz, ALS, RLS when configured, own API, health, reflection.

Served by the lean HTTP/2 server (net/grpc_server.py) by default, or by grpc.aio's server
(`settings.server.grpc_transport: grpcio`); the same generated registrations feed either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from gatekeeper.grpc.als import AccessLogServicer
from gatekeeper.grpc.api import GatekeeperServicer
from gatekeeper.grpc.authz import AuthorizationServicer
from gatekeeper.net.grpc_server import LeanGrpcServer
from gatekeeper.net.guards import NetStats
from gatekeeper.net.limits import NetLimits
from gatekeeper.settings import GrpcTransport
from gatekeeper.v1 import gatekeeper_pb2, gatekeeper_pb2_grpc

__all__ = ["GrpcServer"]

AUTHZ = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name
ALS = als_pb2.DESCRIPTOR.services_by_name["AccessLogService"].full_name
API = gatekeeper_pb2.DESCRIPTOR.services_by_name["Gatekeeper"].full_name


class GrpcServer:
    """Owns the gRPC server and its health states (not-ready first on shutdown)."""

    def __init__(
        self,
        *,
        authz: AuthorizationServicer,
        als: AccessLogServicer,
        api: GatekeeperServicer,
        extra: Sequence[tuple[str, Callable[[grpc.aio.Server], object]]] = (),
        reuse_port: bool = False,
        transport: GrpcTransport = GrpcTransport.LEAN,
        limits: NetLimits | None = None,
    ) -> None:
        """`reuse_port`: share the port with the other processes of one `serve --workers N`
        (SO_REUSEPORT); off, a port another process holds fails the start. `limits`: what a
        client may make the server hold (grpc.aio takes the message and stream limits)."""
        limits = limits or NetLimits()
        self.server: grpc.aio.Server | LeanGrpcServer
        if transport is GrpcTransport.LEAN:
            self.server = LeanGrpcServer(reuse_port=reuse_port, limits=limits)
        else:
            self.server = grpc.aio.server(
                options=[
                    ("grpc.so_reuseport", int(reuse_port)),
                    ("grpc.max_receive_message_length", limits.max_body_bytes),
                    ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
                    ("grpc.max_metadata_size", limits.max_header_bytes),
                ]
            )
        self.health = health.aio.HealthServicer()
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(authz, self.server)
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(als, self.server)
        gatekeeper_pb2_grpc.add_GatekeeperServicer_to_server(api, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.services = [AUTHZ, ALS, API]
        for name, add in extra:
            add(self.server)
            self.services.append(name)
        # the asyncio servicer for either server (enable_server_reflection picks by class)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                (
                    *self.services,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                )
            ),
            self.server,
        )
        self.port = 0

    @property
    def handler_failures(self) -> Mapping[str, int]:
        """Handlers that raised, by method path (the lean server counts them; grpc.aio only
        logs them)."""
        if isinstance(self.server, LeanGrpcServer):
            return self.server.handler_failures
        return {}

    @property
    def net_stats(self) -> NetStats | None:
        """What clients made the lean server refuse (grpc.aio keeps no such counts)."""
        return self.server.stats if isinstance(self.server, LeanGrpcServer) else None

    @property
    def connections(self) -> int:
        """Client connections open now (the lean server; 0 for grpc.aio)."""
        return len(self.server.connections) if isinstance(self.server, LeanGrpcServer) else 0

    async def start(self, host: str, port: int) -> int:
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind gRPC on {host}:{port}")
        await self.server.start()
        await self.set_serving(True)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.services):
            result = self.health.set(name, status)
            if result is not None:
                await result

    async def stop(self, grace_s: float) -> None:
        await self.set_serving(False)
        await self.server.stop(grace_s)
