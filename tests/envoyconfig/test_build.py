"""What the generated bootstrap contains, by option (the typed build, as Envoy reads it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gatekeeper.envoyconfig.build import build, document
from gatekeeper.envoyconfig.options import Address, EnvoyConfigOptions, Mode

OTEL = "envoy.tracers.opentelemetry"


def _doc(**kwargs: Any) -> dict[str, Any]:
    return document(build(EnvoyConfigOptions(**kwargs)))


def _hcm(doc: dict[str, Any]) -> dict[str, Any]:
    listener = doc["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[no-any-return]


def _filters(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f["typed_config"] for f in _hcm(doc)["http_filters"]}


def _clusters(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["static_resources"]["clusters"]}


def _patterns(matcher: dict[str, Any]) -> list[str]:
    return [p.get("exact") or p["prefix"] for p in matcher["patterns"]]


@pytest.mark.parametrize("otel", [None, Address("127.0.0.1", 4318)])
def test_http_mode_always_passes_the_trace_context(otel: Address | None) -> None:
    authz = _filters(_doc(otel_collector=otel))["envoy.filters.http.ext_authz"]
    allowed = _patterns(authz["allowed_headers"])
    assert {"traceparent", "tracestate", "x-api-key", "x-request-id"} <= set(allowed)
    assert "authorization_request" not in authz["http_service"]  # the deprecated form is unused
    assert authz["http_service"]["server_uri"]["uri"] == "http://127.0.0.1:9192"


def test_grpc_mode_and_its_http2_cluster() -> None:
    doc = _doc(mode=Mode.GRPC, authz_timeout=timedelta(seconds=5))
    authz = _filters(doc)["envoy.filters.http.ext_authz"]
    assert authz["grpc_service"] == {"envoy_grpc": {"cluster_name": "gatekeeper"}, "timeout": "5s"}
    assert authz["status_on_error"] == {"code": "ServiceUnavailable"}
    gatekeeper = _clusters(doc)["gatekeeper"]
    options = gatekeeper["typed_extension_protocol_options"]
    (http2,) = options.values()
    assert http2["explicit_http_config"] == {"http2_protocol_options": {}}
    assert "gatekeeper_authz_http" not in _clusters(doc)


def test_tracer_exports_otlp_http_to_the_collector() -> None:
    doc = _doc(otel_collector=Address("otel.example", 4318))
    provider = _hcm(doc)["tracing"]["provider"]
    assert provider["name"] == OTEL
    uri = provider["typed_config"]["http_service"]["http_uri"]
    assert uri["uri"] == "http://otel.example:4318/v1/traces"
    collector = _clusters(doc)[uri["cluster"]]
    assert collector["type"] == "STRICT_DNS"  # a name, not an IP
    assert "tracing" not in _hcm(_doc())


def test_settlement_rate_limit_and_failure_mode_switch_their_parts() -> None:
    doc = _doc(settlement=False, rate_limit=True, failure_mode_allow=True)
    assert "access_log" not in _hcm(doc)
    filters = _filters(doc)
    assert list(filters) == [
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.router",
    ]
    assert filters["envoy.filters.http.ext_authz"]["failure_mode_allow"] is True
    assert filters["envoy.filters.http.ratelimit"]["domain"] == "edge"
    host = _hcm(doc)["route_config"]["virtual_hosts"][0]
    assert host["rate_limits"][0]["actions"] == [
        {"request_headers": {"header_name": "x-client-id", "descriptor_key": "client"}}
    ]
    settled = _hcm(_doc())["access_log"][0]["typed_config"]
    assert settled["common_config"]["buffer_size_bytes"] == 0
    assert settled["additional_response_headers_to_log"] == ["x-usage-total-tokens"]


def test_rate_limit_only_has_no_authorizer_or_unmetered_route() -> None:
    doc = _doc(ext_authz=False, settlement=False, rate_limit=True)
    assert list(_filters(doc)) == ["envoy.filters.http.ratelimit", "envoy.filters.http.router"]
    routes = _hcm(doc)["route_config"]["virtual_hosts"][0]["routes"]
    assert routes == [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]


def test_sidecar_shape() -> None:
    doc = _doc(mode=Mode.GRPC, sidecar=True, listen=Address("0.0.0.0", 10000))
    assert [x["name"] for x in doc["static_resources"]["listeners"]] == ["ingress", "health"]
    assert set(_clusters(doc)) == {"gatekeeper", "app", "envoy_admin"}
    admin = _clusters(doc)["envoy_admin"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert admin["endpoint"]["address"]["socket_address"]["port_value"] == 9901
