"""The extensionProviders entries (MeshConfig, not a CRD) use only fields Istio defines.

Field names and types come from istio/api mesh/v1alpha1/config.proto
(MeshConfig.ExtensionProvider, EnvoyExternalAuthorizationHttpProvider and
EnvoyExternalAuthorizationGrpcProvider), in their JSON (lowerCamelCase) form. Note that the
gRPC provider has no header lists: Envoy sends every header in gRPC mode.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.helm import CHART, REPO, helm

_DURATION = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?s$"}  # protobuf Duration JSON
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_HEADERS = {"type": "array", "items": {"type": "string", "minLength": 1}}
_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "maxRequestBytes": {"type": "integer", "minimum": 0},
        "allowPartialMessage": {"type": "boolean"},
        "packAsBytes": {"type": "boolean"},
    },
}
_COMMON = {
    "service": {"type": "string", "minLength": 1},
    "port": _PORT,
    "timeout": _DURATION,
    "failOpen": {"type": "boolean"},
    "clearRouteCache": {"type": "boolean"},
    "statusOnError": {"type": "string", "pattern": "^[1-5][0-9][0-9]$"},
    "includeRequestBodyInCheck": _BODY,
}
EXT_AUTHZ_GRPC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["service", "port"],
    "properties": _COMMON,
}
EXT_AUTHZ_HTTP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["service", "port"],
    "properties": {
        **_COMMON,
        "pathPrefix": {"type": "string"},
        "includeHeadersInCheck": _HEADERS,  # deprecated upstream; kept for completeness
        "includeRequestHeadersInCheck": _HEADERS,
        "includeAdditionalHeadersInCheck": {
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "headersToUpstreamOnAllow": _HEADERS,
        "headersToDownstreamOnDeny": _HEADERS,
        "headersToDownstreamOnAllow": _HEADERS,
    },
}
EXTENSION_PROVIDER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "envoyExtAuthzGrpc": EXT_AUTHZ_GRPC,
        "envoyExtAuthzHttp": EXT_AUTHZ_HTTP,
    },
    # the provider is a protobuf oneof: exactly one kind per entry
    "oneOf": [{"required": ["envoyExtAuthzGrpc"]}, {"required": ["envoyExtAuthzHttp"]}],
}
MESH_FRAGMENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["meshConfig"],
    "properties": {
        "meshConfig": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"extensionProviders": {"type": "array", "items": EXTENSION_PROVIDER}},
        }
    },
}


def _providers(fragment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in fragment["meshConfig"]["extensionProviders"]}


def test_shipped_mesh_config_has_both_transports() -> None:
    fragment = yaml.safe_load((REPO / "deploy" / "istio" / "mesh-config.yaml").read_text())
    jsonschema.validate(fragment, MESH_FRAGMENT)
    providers = _providers(fragment)
    assert providers["gatekeeper-grpc"]["envoyExtAuthzGrpc"]["port"] == 9191
    http = providers["gatekeeper-http"]["envoyExtAuthzHttp"]
    assert http["port"] == 9192
    assert {"authorization", "x-api-key"} <= set(http["includeRequestHeadersInCheck"])
    assert "x-gatekeeper-customer" in http["headersToUpstreamOnAllow"]
    assert "retry-after" in http["headersToDownstreamOnDeny"]


def test_the_schema_rejects_a_field_istio_does_not_define() -> None:
    bad = {
        "meshConfig": {
            "extensionProviders": [
                {
                    "name": "x",
                    "envoyExtAuthzGrpc": {
                        "service": "gk",
                        "port": 9191,
                        "includeRequestHeadersInCheck": ["x-api-key"],  # HTTP provider only
                    },
                }
            ]
        }
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, MESH_FRAGMENT)


@pytest.mark.usefixtures("helm_available")
@pytest.mark.parametrize(
    ("values", "provider", "port"),
    [
        ("all-features-values.yaml", "gatekeeper-grpc", 9191),
        ("gateway-values.yaml", "gatekeeper-http", 9192),
    ],
)
def test_notes_print_a_valid_provider_for_the_release(
    values: str, provider: str, port: int
) -> None:
    result = helm(
        "install", "gk", str(CHART), "--namespace", "billing", "--dry-run=client",
        "-f", str(CHART / "ci" / values),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    match = re.search(r"^meshConfig:\n(?:[ ].*\n)+", notes, flags=re.MULTILINE)
    assert match, notes
    fragment = yaml.safe_load(match.group(0))
    jsonschema.validate(fragment, MESH_FRAGMENT)
    entry = _providers(fragment)[provider]
    transport = entry.get("envoyExtAuthzGrpc") or entry["envoyExtAuthzHttp"]
    assert transport["service"] == "gk-gatekeeper.billing.svc.cluster.local"
    assert transport["port"] == port
