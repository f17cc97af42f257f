"""The Envoy bootstraps of the bench: the shipped presets, generated with the bench's ports.

- upstream: an Envoy answering every request itself (`direct_response`, 200, a small JSON body
  and `x-usage-total-tokens`): the fastest upstream there is, never Python.
- front proxies: the options of `envoy/front-proxy.yaml` (HTTP mode), `front-proxy-grpc.yaml`
  (gRPC mode) and `rate-limit.yaml` (ShouldRateLimit), through `gatekeeper envoy-config`'s
  generator, changed only as the bench needs and says: no access log (ALS settlement) — the
  bench route settles nothing, so each request costs exactly one decision; an authorizer timeout
  of 5 s, so a saturated 2-core machine answers slowly rather than with Envoy's timeout 503;
  "Envoy alone" also has no ext_authz filter.

The generator (envoy-data-plane, ~450 ms to import) is imported when a front proxy is built, so
`gatekeeper serve`, which shares the CLI with `bench`, never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

__all__ = ["FRONT", "front", "upstream"]

AUTHZ_TIMEOUT = timedelta(seconds=5)

# front proxy kind -> the preset (shipped bootstrap) whose options it starts from
FRONT: Mapping[str, str] = {
    "alone": "envoy/front-proxy.yaml",
    "http": "envoy/front-proxy.yaml",
    "grpc": "envoy/front-proxy-grpc.yaml",
    "rls": "envoy/rate-limit.yaml",
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


def front(kind: str, *, upstream_port: int, authz_port: int = 0) -> dict[str, Any]:
    """The front proxy `kind` (see FRONT), listener and admin on port 0, pointed at the upstream
    and (unless "alone") at an authorizer on `authz_port` (HTTP port for "http", gRPC port
    otherwise)."""
    from gatekeeper.envoyconfig import Address
    from gatekeeper.envoyconfig.build import build, document
    from gatekeeper.envoyconfig.command import parse_options
    from gatekeeper.envoyconfig.presets import PRESETS

    base = parse_options(PRESETS[FRONT[kind]])
    port = authz_port or 1  # "alone": a port nothing connects to
    options = replace(
        base,
        listen=Address("127.0.0.1", 0),
        admin=Address("127.0.0.1", 0),
        upstream=Address("127.0.0.1", upstream_port),
        ext_authz=base.ext_authz and kind != "alone",
        settlement=False,
        authz_timeout=AUTHZ_TIMEOUT,
        authz_http_port=port if kind == "http" else base.authz_http_port,
        grpc_port=port if kind in ("grpc", "rls") else base.grpc_port,
    )
    return document(build(options))
