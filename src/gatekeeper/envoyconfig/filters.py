"""The Envoy filters gatekeeper is wired through, as envoy-data-plane's typed messages.

ext_authz (HTTP or gRPC mode), the rate limit filter, the router, the gRPC access log that
carries settlement, and the OpenTelemetry tracer. Cluster names are the ones build.py defines.
Imports envoy-data-plane (~450 ms): only the `envoy-config` verb, tests and the bench load it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
from envoy_data_plane.envoy.config.core.v3 import (
    ApiVersion,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    HttpService,
    HttpUri,
)
from envoy_data_plane.envoy.config.ratelimit.v3 import RateLimitServiceConfig
from envoy_data_plane.envoy.config.trace.v3 import OpenTelemetryConfig, TracingHttp
from envoy_data_plane.envoy.extensions.access_loggers.grpc.v3 import (
    CommonGrpcAccessLogConfig,
    HttpGrpcAccessLogConfig,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
    AuthorizationResponse,
    CheckSettings,
    ExtAuthz,
    ExtAuthzPerRoute,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
    HttpService as AuthzHttpService,
)
from envoy_data_plane.envoy.extensions.filters.http.ratelimit.v3 import (
    RateLimit,
    RateLimitXRateLimitHeadersRfcVersion,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManagerTracing,
    HttpFilter,
)
from envoy_data_plane.envoy.type.matcher.v3 import ListStringMatcher, StringMatcher
from envoy_data_plane.envoy.type.v3 import HttpStatus, StatusCode
from envoy_data_plane.google.protobuf import Any

from gatekeeper.envoyconfig.names import (
    AUTHZ_HTTP_CLUSTER,
    EXT_AUTHZ,
    GRPC_CLUSTER,
    OTEL_CLUSTER,
    RATELIMIT,
    ROUTER,
)
from gatekeeper.envoyconfig.options import EnvoyConfigOptions, Mode
from gatekeeper.envoyconfig.render import Note, NotePath

__all__ = ["access_log", "ext_authz", "rate_limit", "router", "tracing", "typed_per_route"]

# request headers the HTTP-mode authorizer always needs: identity, idempotency, the request id
# (settlement key), and the W3C trace context so gatekeeper continues the caller's trace
IDENTITY_HEADERS = ("x-api-key", "x-request-id", "idempotency-key", "traceparent", "tracestate")
# what gatekeeper's answer may set, and where (DESIGN §4)
DECISION_HEADERS = ("x-gatekeeper-customer", "x-gatekeeper-plan", "x-gatekeeper-decision-id")
DENIAL_HEADERS = ("content-type", "retry-after", "www-authenticate")
LIMIT_HEADER_PREFIXES = ("ratelimit", "x-ratelimit-")
METADATA_HEADER_PREFIX = "x-gatekeeper-meta-"


def _envoy_grpc() -> GrpcService:
    return GrpcService(envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=GRPC_CLUSTER))


def _matchers(exact: tuple[str, ...] = (), prefix: tuple[str, ...] = ()) -> ListStringMatcher:
    patterns = [StringMatcher(exact=e) for e in exact] + [StringMatcher(prefix=p) for p in prefix]
    return ListStringMatcher(patterns=patterns)


def ext_authz(
    options: EnvoyConfigOptions, path: NotePath
) -> tuple[HttpFilter, dict[NotePath, Note]]:
    """The ext_authz filter in the options' mode, answering `status_on_error` 503 when
    gatekeeper errs or is down (unless failure_mode_allow), and its notes under `path`."""
    typed = (*path, "typed_config")
    notes: dict[NotePath, Note] = {}
    config = ExtAuthz(
        failure_mode_allow=options.failure_mode_allow,
        status_on_error=HttpStatus(code=StatusCode.ServiceUnavailable),
    )
    if options.mode is Mode.GRPC:
        config.grpc_service = _envoy_grpc()
        config.grpc_service.timeout = options.authz_timeout
        config.transport_api_version = ApiVersion.V3
    else:
        config.http_service = _http_service(options)
        config.allowed_headers = _matchers((*IDENTITY_HEADERS, *options.authz_request_headers))
        response = (*typed, "http_service", "authorization_response")
        notes.update(
            {
                (*response, "allowed_upstream_headers"): Note(
                    "set on the upstream request (overwriting any client-supplied copy)"
                ),
                (*response, "allowed_client_headers"): Note("sent to the client with a denial"),
                (*response, "allowed_client_headers_on_success"): Note(
                    "added to the client's response when allowed"
                ),
                (*response, "dynamic_metadata_from_headers"): Note(
                    "decision id, customer, reservation → access log metadata (settlement)"
                ),
                (*typed, "allowed_headers"): Note(
                    "request headers gatekeeper needs (identity, idempotency, request id, trace\n"
                    "context, cost); the filter-level form (authorization_request's is deprecated)"
                ),
            }
        )
    fail = "pass unmetered" if options.failure_mode_allow else "get status_on_error"
    notes[(*typed, "status_on_error")] = Note(
        f"gatekeeper down or erring: requests {fail} (failure_mode_allow: "
        f"{str(options.failure_mode_allow).lower()})"
    )
    return HttpFilter(name=EXT_AUTHZ, typed_config=Any.pack(config)), notes


def _http_service(options: EnvoyConfigOptions) -> AuthzHttpService:
    host = options.gatekeeper_host
    authority = f"[{host}]" if ":" in host else host
    return AuthzHttpService(
        server_uri=HttpUri(
            uri=f"http://{authority}:{options.authz_http_port}",
            cluster=AUTHZ_HTTP_CLUSTER,
            timeout=options.authz_timeout,
        ),
        authorization_response=AuthorizationResponse(
            allowed_upstream_headers=_matchers((*DECISION_HEADERS, *options.plan_headers)),
            allowed_client_headers=_matchers(DENIAL_HEADERS, LIMIT_HEADER_PREFIXES),
            allowed_client_headers_on_success=_matchers(prefix=LIMIT_HEADER_PREFIXES),
            dynamic_metadata_from_headers=_matchers(prefix=(METADATA_HEADER_PREFIX,)),
        ),
    )


def rate_limit(options: EnvoyConfigOptions) -> HttpFilter:
    """Envoy's rate limit filter asking gatekeeper's ShouldRateLimit for the options' domain;
    requests pass when the service is unreachable (failure_mode_deny: false, Envoy's default)."""
    config = RateLimit(
        domain=options.rate_limit_domain,
        timeout=options.rate_limit_timeout,
        failure_mode_deny=False,
        enable_x_ratelimit_headers=RateLimitXRateLimitHeadersRfcVersion.DRAFT_VERSION_03,
        rate_limit_service=RateLimitServiceConfig(
            grpc_service=_envoy_grpc(), transport_api_version=ApiVersion.V3
        ),
    )
    return HttpFilter(name=RATELIMIT, typed_config=Any.pack(config))


def router() -> HttpFilter:
    return HttpFilter(name=ROUTER, typed_config=Any.pack(Router()))


def access_log(
    options: EnvoyConfigOptions, path: NotePath
) -> tuple[AccessLog, dict[NotePath, Note]]:
    """The gRPC access log to gatekeeper that settles reservations from the response headers
    named in `settle_headers`, flushed about every 50 ms."""
    config = HttpGrpcAccessLogConfig(
        common_config=CommonGrpcAccessLogConfig(
            log_name="gatekeeper-settlement",
            transport_api_version=ApiVersion.V3,
            grpc_service=_envoy_grpc(),
            buffer_size_bytes=0,
            buffer_flush_interval=timedelta(milliseconds=50),
        ),
        additional_response_headers_to_log=list(options.settle_headers),
    )
    note = Note(
        "flush promptly: entries still buffered when Envoy stops are lost, and an\n"
        "unsettled reservation then stands at its estimate"
    )
    notes = {(*path, "typed_config", "common_config", "buffer_size_bytes"): note}
    return AccessLog(name="envoy.access_loggers.http_grpc", typed_config=Any.pack(config)), notes


def tracing(options: EnvoyConfigOptions) -> HttpConnectionManagerTracing | None:
    """Envoy's OpenTelemetry tracer exporting OTLP/HTTP to the collector's /v1/traces, or None
    without a collector."""
    collector = options.otel_collector
    if collector is None:
        return None
    config = OpenTelemetryConfig(
        http_service=HttpService(
            http_uri=HttpUri(
                uri=f"http://{collector}/v1/traces",
                cluster=OTEL_CLUSTER,
                timeout=timedelta(seconds=1),
            )
        ),
        service_name="envoy",
    )
    provider = TracingHttp(name="envoy.tracers.opentelemetry", typed_config=Any.pack(config))
    return HttpConnectionManagerTracing(provider=provider)


def typed_per_route(disabled: bool, context: Mapping[str, str]) -> Any:
    """ExtAuthzPerRoute: authorization off on a route, or the route's context_extensions."""
    if disabled:
        return Any.pack(ExtAuthzPerRoute(disabled=True))
    return Any.pack(
        ExtAuthzPerRoute(check_settings=CheckSettings(context_extensions=dict(context)))
    )
