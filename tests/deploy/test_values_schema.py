"""values.schema.json turns a wrong value into an install error: through Helm and directly."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.helm import CHART, SCENARIOS, render

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())


def _merged(scenario: str) -> dict[str, Any]:
    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merge(out[key], value) if both else value
        return out

    values = DEFAULTS
    for path in SCENARIOS[scenario]:
        values = merge(values, yaml.safe_load(path.read_text()))
    return values


def test_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_schema_closes_the_top_level_and_the_key_objects() -> None:
    assert SCHEMA["additionalProperties"] is False
    for key in ("image", "redis", "serve", "worker", "service", "sidecar", "istio", "secrets"):
        assert SCHEMA["properties"][key]["additionalProperties"] is False, key
    assert set(SCHEMA["properties"]) - {"global"} == set(DEFAULTS)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_shipped_values_file_conforms(scenario: str) -> None:
    jsonschema.validate(_merged(scenario), SCHEMA)


WRONG = [
    ("serve.replicaCount=two", "want integer"),
    ("redis.url=http://cache:6379", "redis"),
    ("service.ports.grpc=70000", "maximum"),
    ("istio.context=MESH", "istio"),
]


@pytest.mark.parametrize(("setting", "message"), WRONG)
def test_jsonschema_rejects_a_wrong_value(setting: str, message: str) -> None:
    path, _, raw = setting.partition("=")
    values = json.loads(json.dumps(DEFAULTS))
    node = values
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = yaml.safe_load(raw)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, SCHEMA)


def test_jsonschema_rejects_an_unknown_top_level_key() -> None:
    with pytest.raises(jsonschema.ValidationError, match="replicas"):
        jsonschema.validate({**DEFAULTS, "replicas": 3}, SCHEMA)


def test_jsonschema_rejects_an_unknown_nested_key() -> None:
    values = json.loads(json.dumps(DEFAULTS))
    values["serve"]["replica"] = 3
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        jsonschema.validate(values, SCHEMA)


@pytest.mark.usefixtures("helm_available")
@pytest.mark.parametrize(("setting", "message"), WRONG)
def test_helm_template_fails_on_a_wrong_value(setting: str, message: str) -> None:
    result = render(sets=(setting,))
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.usefixtures("helm_available")
def test_helm_template_fails_on_an_unknown_top_level_key() -> None:
    result = render(sets=("replicas=3",))
    assert result.returncode != 0
    assert "additional properties 'replicas' not allowed" in result.stderr
