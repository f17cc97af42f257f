"""Names the generated bootstraps share with the code that runs or patches them."""

from __future__ import annotations

__all__ = [
    "AUTHZ_HTTP_CLUSTER",
    "EXT_AUTHZ",
    "GRPC_CLUSTER",
    "HCM",
    "LISTENER",
    "OTEL_CLUSTER",
    "RATELIMIT",
    "ROUTER",
]

LISTENER = "ingress"
GRPC_CLUSTER = "gatekeeper"  # ext_authz gRPC, access log (settlement), ShouldRateLimit
AUTHZ_HTTP_CLUSTER = "gatekeeper_authz_http"  # ext_authz HTTP mode
OTEL_CLUSTER = "otel_collector"
HCM = "envoy.filters.network.http_connection_manager"
EXT_AUTHZ = "envoy.filters.http.ext_authz"
RATELIMIT = "envoy.filters.http.ratelimit"
ROUTER = "envoy.filters.http.router"
