"""Every rendered manifest validates: Kubernetes kinds against the official JSON schemas of two
Kubernetes minors (kubernetes-validate, offline, strict: unknown fields are errors), Istio kinds
against Istio's CRD openAPIV3Schema, the ServiceMonitor against its basic shape, and the Envoy
configuration inside the EnvoyFilters against Envoy itself."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.helm import SCENARIOS, manifests
from tests.deploy.schemas import (
    ISTIO_CRDS,
    KUBERNETES_VERSIONS,
    SERVICE_MONITOR_SCHEMA,
    crd_validator,
)
from tests.deploy.tools import ToolUnavailable, envoy_binary

pytestmark = pytest.mark.usefixtures("helm_available")

ISTIO_GROUPS = ("networking.istio.io/", "security.istio.io/", "telemetry.istio.io/")


def _needs_istio_crds() -> None:
    if not ISTIO_CRDS.is_file():
        pytest.skip(f"Istio CRD schemas not found at {ISTIO_CRDS} (set GATEKEEPER_ISTIO_CRDS)")


def _is_builtin(doc: dict[str, Any]) -> bool:
    return not doc["apiVersion"].startswith((*ISTIO_GROUPS, "monitoring.coreos.com/"))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_kubernetes_kinds_validate(scenario: str, version: str) -> None:
    checked = 0
    for doc in manifests(scenario):
        if not _is_builtin(doc):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{name} at {list(exc.path)}: {exc.message}")
        checked += 1
    assert checked >= 4


def test_the_kubernetes_validator_rejects_an_unknown_field() -> None:
    deployment = next(d for d in manifests("default") if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def _istio_docs() -> list[dict[str, Any]]:
    found = []
    for scenario in sorted(SCENARIOS):
        found += [d for d in manifests(scenario) if d["apiVersion"].startswith(ISTIO_GROUPS)]
    return found


def test_istio_kinds_validate_against_the_crds() -> None:
    _needs_istio_crds()
    docs = _istio_docs()
    assert {d["kind"] for d in docs} == {"AuthorizationPolicy", "EnvoyFilter"}
    for doc in docs:
        validator = crd_validator(doc["apiVersion"], doc["kind"])
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_crd_validator_rejects_a_misspelt_field() -> None:
    _needs_istio_crds()
    policy = next(d for d in _istio_docs() if d["kind"] == "AuthorizationPolicy")
    broken = copy.deepcopy(policy)
    broken["spec"]["providr"] = broken["spec"].pop("provider")
    assert list(crd_validator(policy["apiVersion"], policy["kind"]).iter_errors(broken))
    broken = copy.deepcopy(policy)
    broken["spec"]["action"] = "EXTERNAL"
    assert list(crd_validator(policy["apiVersion"], policy["kind"]).iter_errors(broken))


def test_authorization_policy_is_custom_with_the_provider() -> None:
    policy = next(d for d in manifests("all-features") if d["kind"] == "AuthorizationPolicy")
    assert policy["spec"]["action"] == "CUSTOM"
    assert policy["spec"]["provider"] == {"name": "gatekeeper-grpc"}
    assert policy["spec"]["selector"] == {"matchLabels": {"app": "my-api"}}


def test_service_monitor_has_the_expected_shape() -> None:
    monitors = [d for d in manifests("all-features") if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 1
    jsonschema.validate(monitors[0], SERVICE_MONITOR_SCHEMA)
    assert monitors[0]["spec"]["endpoints"][0]["port"] == "http"


def _patches(scenario: str) -> dict[str, Any]:
    """The Envoy config carried by the EnvoyFilters: filter, vhost rate_limits, access log."""
    out: dict[str, Any] = {}
    for doc in manifests(scenario):
        if doc["kind"] != "EnvoyFilter":
            continue
        for patch in doc["spec"]["configPatches"]:
            value = patch["patch"]["value"]
            if patch["applyTo"] == "HTTP_FILTER":
                out["http_filter"] = value
            elif patch["applyTo"] == "VIRTUAL_HOST":
                out["rate_limits"] = value["rate_limits"]
            elif patch["applyTo"] == "NETWORK_FILTER":
                out["access_log"] = value["typed_config"]["access_log"]
    return out


def _cluster_of(config: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "cluster_name":
                names.add(value)
            names |= _cluster_of(value)
    elif isinstance(config, list):
        for item in config:
            names |= _cluster_of(item)
    return names


@pytest.mark.parametrize("scenario", ["all-features"])
def test_envoy_filter_patches_are_valid_envoy_config(scenario: str, tmp_path: Path) -> None:
    """Splice the patch values into a bootstrap as Istio would, and let Envoy 1.40 judge them."""
    try:
        envoy = envoy_binary()
    except ToolUnavailable as exc:
        pytest.skip(str(exc))
    patches = _patches(scenario)
    assert patches.keys() == {"http_filter", "rate_limits", "access_log"}
    clusters = _cluster_of(patches)
    assert clusters == {"outbound|9191||gk-gatekeeper.billing.svc.cluster.local"}
    als = patches["access_log"][0]["typed_config"]
    assert als["additional_response_headers_to_log"] == ["x-usage-total-tokens"]
    assert als["common_config"]["buffer_flush_interval"] == "0.05s"
    bootstrap = {
        "static_resources": {
            "listeners": [
                {
                    "name": "inbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15006}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters"
                                        ".network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "inbound",
                                        "access_log": patches["access_log"],
                                        "http_filters": [
                                            patches["http_filter"],
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions"
                                                    ".filters.http.router.v3.Router"
                                                },
                                            },
                                        ],
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "inbound|http|8000",
                                                    "domains": ["*"],
                                                    "rate_limits": patches["rate_limits"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "app"},
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": name,
                    "type": "STATIC",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": 9191,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
                for name in (*sorted(clusters), "app")
            ],
        }
    }
    path = tmp_path / "istio-patches.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
