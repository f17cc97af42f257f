"""An Envoy bootstrap for gatekeeper, built from envoy-data-plane's typed messages.

`build(options)` gives the typed `Bootstrap` and the notes (comments by path) that explain it;
`document()` the dict Envoy reads (proto field names, `@type` for Any); `bootstrap_yaml()` the
commented YAML `gatekeeper envoy-config` writes. Imports envoy-data-plane (~450 ms): only the
`envoy-config` verb, tests and the bench load this module, never `serve` or the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any as AnyValue

import betterproto2
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import Address as EnvoyAddress
from envoy_data_plane.envoy.config.core.v3 import Http2ProtocolOptions, SocketAddress
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    RateLimit,
    RateLimitAction,
    RateLimitActionRequestHeaders,
    Route,
    RouteAction,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpFilter,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.google.protobuf import Any

from gatekeeper.envoyconfig import filters
from gatekeeper.envoyconfig.header import header
from gatekeeper.envoyconfig.names import (
    AUTHZ_HTTP_CLUSTER,
    EXT_AUTHZ,
    GRPC_CLUSTER,
    HCM,
    LISTENER,
    OTEL_CLUSTER,
)
from gatekeeper.envoyconfig.options import Address, EnvoyConfigOptions, Mode
from gatekeeper.envoyconfig.render import Note, NotePath, render

__all__ = ["Built", "bootstrap_yaml", "build", "document"]

CONNECT_TIMEOUT = timedelta(milliseconds=250)
HTTP2_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
LISTENERS: NotePath = ("static_resources", "listeners")
CLUSTERS: NotePath = ("static_resources", "clusters")
INGRESS_HCM: NotePath = (*LISTENERS, 0, "filter_chains", 0, "filters", 0, "typed_config")
CHART_LISTEN = "chart: sidecar.envoy.port"  # the chart rewrites these two ports (configmap.yaml)
CHART_APP = "chart: sidecar.app.port"


@dataclass(frozen=True, slots=True)
class Built:
    """A typed bootstrap and the comments that explain it, by path into its dict form."""

    bootstrap: Bootstrap
    notes: dict[NotePath, Note]


def build(options: EnvoyConfigOptions) -> Built:
    """The bootstrap `options` ask for: one ingress listener (plus the sidecar's readiness
    listener) in front of the upstream, gatekeeper's filters, and the clusters they use."""
    notes: dict[NotePath, Note] = {}
    listeners = [_ingress(options, notes)]
    if options.sidecar:
        notes[(*LISTENERS, 1, "name")] = Note(
            "Readiness for the kubelet: /ready of the loopback-only admin interface, and nothing "
            "else."
        )
        listeners.append(_health(options))
    bootstrap = Bootstrap(
        static_resources=BootstrapStaticResources(
            listeners=listeners, clusters=_clusters(options, notes)
        ),
        admin=None if options.admin is None else Admin(address=_address(options.admin)),
    )
    if options.sidecar:
        notes[(*LISTENERS, 0, "address", "socket_address", "port_value")] = Note(after=CHART_LISTEN)
    return Built(bootstrap, notes)


def document(built: Built) -> dict[str, AnyValue]:
    """The bootstrap as Envoy's YAML/JSON reads it: proto field names, `"@type"` on Any,
    durations as `"0.250s"`, fields at their default value left out."""
    return built.bootstrap.to_dict(casing=betterproto2.Casing.SNAKE)


def bootstrap_yaml(options: EnvoyConfigOptions) -> str:
    """What `gatekeeper envoy-config` writes for `options`: header comment, then the YAML."""
    built = build(options)
    return render(document(built), header=header(options), notes=built.notes)


# --- listeners -------------------------------------------------------------------------


def _ingress(options: EnvoyConfigOptions, notes: dict[NotePath, Note]) -> Listener:
    hcm = HttpConnectionManager(
        stat_prefix="ingress",
        route_config=_routes(options, notes),
        http_filters=_http_filters(options, notes),
        tracing=filters.tracing(options),
        use_remote_address=True,
    )
    if options.settlement:
        log, log_notes = filters.access_log(options, (*INGRESS_HCM, "access_log", 0))
        hcm.access_log = [log]
        notes.update(log_notes)
    return _listener(LISTENER, options.listen, hcm)


def _listener(name: str, address: Address, hcm: HttpConnectionManager) -> Listener:
    chain = FilterChain(filters=[Filter(name=HCM, typed_config=Any.pack(hcm))])
    return Listener(name=name, address=_address(address), filter_chains=[chain])


def _http_filters(options: EnvoyConfigOptions, notes: dict[NotePath, Note]) -> list[HttpFilter]:
    chain: list[HttpFilter] = []
    if options.ext_authz:
        authz, authz_notes = filters.ext_authz(options, (*INGRESS_HCM, "http_filters", 0))
        chain.append(authz)
        notes.update(authz_notes)
    if options.rate_limit:  # after ext_authz: descriptors may use the headers it sets
        chain.append(filters.rate_limit(options))
    chain.append(filters.router())
    return chain


def _health(options: EnvoyConfigOptions) -> Listener:
    """The sidecar's readiness listener: 0.0.0.0:<health port>, /ready → Envoy's admin."""
    route = Route(match=RouteMatch(path="/ready"), route=RouteAction(cluster="envoy_admin"))
    hosts = [VirtualHost(name="health", domains=["*"], routes=[route])]
    hcm = HttpConnectionManager(
        stat_prefix="health",
        route_config=RouteConfiguration(name="health", virtual_hosts=hosts),
        http_filters=[filters.router()],
    )
    return _listener("health", Address("0.0.0.0", options.sidecar_health_port), hcm)


# --- routes ----------------------------------------------------------------------------


def _upstream_name(options: EnvoyConfigOptions) -> str:
    return "app" if options.sidecar else "upstream"


def _routes(options: EnvoyConfigOptions, notes: dict[NotePath, Note]) -> RouteConfiguration:
    name = "app" if options.sidecar else "api"
    cluster = _upstream_name(options)
    routes: list[Route] = []
    host_path = (*INGRESS_HCM, "route_config", "virtual_hosts")
    if options.ext_authz:
        notes[host_path] = Note(
            "x-gatekeeper-* headers sent by a client are overwritten by ext_authz on every "
            "admitted\nrequest (route-level request_headers_to_remove would run after ext_authz "
            "and drop them)"
        )
        for feature in options.route_features:
            context = {"feature": feature.feature}
            if feature.cost is not None:
                context["cost"] = str(feature.cost)
            notes[(*host_path, 0, "routes", len(routes), "match")] = Note(
                "per-route feature from Envoy itself (context_extensions) instead of the "
                "policy's route table"
            )
            routes.append(_route(feature.prefix, cluster, filters.typed_per_route(False, context)))
        for prefix in options.unmetered_prefixes:
            route = _route(prefix, cluster, filters.typed_per_route(True, {}))
            route.request_headers_to_remove = [*filters.DECISION_HEADERS, *options.plan_headers]
            notes[(*host_path, 0, "routes", len(routes), "request_headers_to_remove")] = Note(
                "unmetered: ext_authz is off here, so nothing overwrites a client's copies: drop "
                "them"
            )
            routes.append(route)
    routes.append(_route("/", cluster, None))
    host = VirtualHost(name=name, domains=["*"], routes=routes)
    if options.rate_limit:
        actions = [
            RateLimitAction(
                request_headers=RateLimitActionRequestHeaders(
                    header_name=header, descriptor_key=key
                )
            )
            for key, header in options.rate_limit_descriptors
        ]
        host.rate_limits = [RateLimit(actions=actions)]
    return RouteConfiguration(name=name, virtual_hosts=[host])


def _route(prefix: str, cluster: str, per_filter: Any | None) -> Route:
    route = Route(match=RouteMatch(prefix=prefix), route=RouteAction(cluster=cluster))
    if per_filter is not None:
        route.typed_per_filter_config = {EXT_AUTHZ: per_filter}
    return route


# --- clusters --------------------------------------------------------------------------


def _clusters(options: EnvoyConfigOptions, notes: dict[NotePath, Note]) -> list[Cluster]:
    clusters: list[Cluster] = []
    gatekeeper = options.gatekeeper_host
    if options.needs_grpc_cluster:
        notes[(*CLUSTERS, len(clusters), "typed_extension_protocol_options")] = Note(
            "gRPC needs HTTP/2: without it Envoy's config validates but every call fails"
        )
        clusters.append(_cluster(GRPC_CLUSTER, Address(gatekeeper, options.grpc_port), http2=True))
    if options.ext_authz and options.mode is Mode.HTTP:
        address = Address(gatekeeper, options.authz_http_port)
        clusters.append(_cluster(AUTHZ_HTTP_CLUSTER, address))
    if options.otel_collector is not None:
        clusters.append(_cluster(OTEL_CLUSTER, options.otel_collector))
    upstream = _cluster(_upstream_name(options), options.upstream)
    if options.sidecar:
        port = ("load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address")
        path = (*CLUSTERS, len(clusters), *port, "socket_address", "port_value")
        notes[path] = Note(after=CHART_APP)
    clusters.append(upstream)
    if options.sidecar and options.admin is not None:
        clusters.append(_cluster("envoy_admin", Address("127.0.0.1", options.admin.port)))
    return clusters


def _cluster(name: str, address: Address, *, http2: bool = False) -> Cluster:
    """A cluster of one endpoint: STATIC for an IP, STRICT_DNS for a name."""
    kind = ClusterDiscoveryType.STATIC if address.is_ip else ClusterDiscoveryType.STRICT_DNS
    endpoint = LbEndpoint(endpoint=Endpoint(address=_address(address)))
    cluster = Cluster(
        name=name,
        type=kind,
        connect_timeout=CONNECT_TIMEOUT,
        load_assignment=ClusterLoadAssignment(
            cluster_name=name, endpoints=[LocalityLbEndpoints(lb_endpoints=[endpoint])]
        ),
    )
    if http2:
        explicit = HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=Http2ProtocolOptions()
        )
        cluster.typed_extension_protocol_options = {
            HTTP2_OPTIONS: Any.pack(HttpProtocolOptions(explicit_http_config=explicit))
        }
    return cluster


def _address(address: Address) -> EnvoyAddress:
    return EnvoyAddress(socket_address=SocketAddress(address=address.host, port_value=address.port))
