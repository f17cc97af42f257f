"""Validators for rendered manifests: Kubernetes (kubernetes-validate), Istio CRDs, ServiceMonitor.

Kubernetes' API server prunes or (with kubectl's default --validate=strict) rejects fields a
schema does not declare; JSON Schema allows them unless told otherwise. `strict_crd_schema`
therefore closes every object schema that declares `properties` and does not carry
`x-kubernetes-preserve-unknown-fields`, so a misspelt field fails here as it would on a
cluster. CEL rules (`x-kubernetes-validations`) are not evaluated here.
"""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.deploy.helm import REPO

__all__ = [
    "ISTIO_CRDS",
    "KUBERNETES_VERSIONS",
    "SERVICE_MONITOR_SCHEMA",
    "crd_validator",
    "strict_crd_schema",
]

# the chart's kubeVersion floor and the newest minor kubernetes-validate 1.37.0 bundles
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
# shared/ sits beside the repository on development and CI machines
ISTIO_CRDS = Path(
    os.environ.get(
        "GATEKEEPER_ISTIO_CRDS", REPO.parent / "shared" / "reference" / "istio" / "crds.yaml"
    )
)


def strict_crd_schema(schema: Any) -> Any:
    """A copy of an openAPIV3Schema in which undeclared fields are errors (see module doc)."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
                and "additionalProperties" not in node
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for item in node:
                close(item)

    close(schema.get("properties", {}).get("spec", {}))
    return schema


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """Validator for one served version of an Istio CRD. Raises LookupError if not there."""
    group, _, version = api_version.partition("/")
    for crd in yaml.safe_load_all(ISTIO_CRDS.read_text()):
        spec = crd["spec"]
        if spec["group"] != group or spec["names"]["kind"] != kind:
            continue
        for served in spec["versions"]:
            if served["name"] == version and served.get("served"):
                schema = strict_crd_schema(served["schema"]["openAPIV3Schema"])
                return jsonschema.Draft7Validator(schema)
    raise LookupError(f"{api_version} {kind} is not in {ISTIO_CRDS}")


# monitoring.coreos.com is not in shared/reference: this checks the basic shape of what the
# chart renders, with field names from the Prometheus Operator API (ServiceMonitorSpec,
# Endpoint, NamespaceSelector). The CRD itself is checked on a cluster at install.
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
}
_DURATION = {"type": "string", "pattern": "^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}
