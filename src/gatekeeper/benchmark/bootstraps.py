"""The Envoy bootstraps of the bench: the shipped ones (`envoy/`, packaged copies), re-addressed.

- upstream: an Envoy answering every request itself (`direct_response`, 200, a small JSON body
  and `x-usage-total-tokens`): the fastest upstream there is, never Python.
- front proxies: `front-proxy.yaml` (HTTP mode), `front-proxy-grpc.yaml` (gRPC mode),
  `rate-limit.yaml` (ShouldRateLimit), changed only as the bench needs and says:
  the access log (ALS settlement) is removed — the bench route settles nothing, so each request
  costs exactly one decision; the authorizer timeout is 5 s, so a saturated 2-core machine
  answers slowly rather than with Envoy's timeout 503; "Envoy alone" also drops the ext_authz
  filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gatekeeper.envoy_runner import packaged_bootstrap, readdress

__all__ = ["FRONT", "front", "upstream"]

EXT_AUTHZ = "envoy.filters.http.ext_authz"
AUTHZ_TIMEOUT = "5s"

# front proxy kind -> the packaged bootstrap it derives from
FRONT: Mapping[str, str] = {
    "alone": "front-proxy.yaml",
    "http": "front-proxy.yaml",
    "grpc": "front-proxy-grpc.yaml",
    "rls": "rate-limit.yaml",
}


def upstream() -> dict[str, Any]:
    """A one-listener Envoy whose only route answers 200 itself; listener and admin on port 0."""
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": '{"ok":true}'}},
        "response_headers_to_add": [
            {"header": {"key": "x-usage-total-tokens", "value": "20"}},
            {"header": {"key": "content-type", "value": "application/json"}},
        ],
    }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": "upstream",
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
        "route_config": {
            "name": "direct",
            "virtual_hosts": [{"name": "direct", "domains": ["*"], "routes": [route]}],
        },
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "upstream",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    typed: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def _without_ext_authz(hcm: dict[str, Any]) -> None:
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != EXT_AUTHZ]
    for host in hcm["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            route.get("typed_per_filter_config", {}).pop(EXT_AUTHZ, None)
            if route.get("typed_per_filter_config") == {}:
                del route["typed_per_filter_config"]


def _slow_authz_timeout(hcm: dict[str, Any]) -> None:
    for f in hcm["http_filters"]:
        if f["name"] != EXT_AUTHZ:
            continue
        typed = f["typed_config"]
        if "grpc_service" in typed:
            typed["grpc_service"]["timeout"] = AUTHZ_TIMEOUT
        else:
            typed["http_service"]["server_uri"]["timeout"] = AUTHZ_TIMEOUT


def front(kind: str, *, upstream_port: int, authz_port: int = 0) -> dict[str, Any]:
    """The front proxy `kind` (see FRONT), listener and admin on port 0, pointed at the upstream
    and (unless "alone") at an authorizer on `authz_port` (HTTP port for "http", gRPC port
    otherwise)."""
    config = packaged_bootstrap(FRONT[kind])
    hcm = _hcm(config)
    hcm.pop("access_log", None)
    if kind == "alone":
        _without_ext_authz(hcm)
    else:
        _slow_authz_timeout(hcm)
    names = {c["name"] for c in config["static_resources"]["clusters"]}
    # clusters the variant does not use (the HTTP mode's ALS cluster, "alone"'s authorizer)
    # point at port 1: never connected to, since nothing routes there
    clusters = {name: 1 for name in names}
    clusters["upstream"] = upstream_port
    if kind == "http":
        clusters["gatekeeper_authz_http"] = authz_port
    elif kind != "alone":
        clusters["gatekeeper"] = authz_port
    return readdress(config, listener=0, admin=0, clusters=clusters)
