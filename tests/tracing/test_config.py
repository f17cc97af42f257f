"""OTEL_* variables → TracingConfig (or None: tracing off), errors naming the variable."""

from __future__ import annotations

import pytest

from gatekeeper.cli import main
from gatekeeper.tracing import TracingConfigError, parse_tracing_env

BASE = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


def test_off_unless_an_endpoint_is_named() -> None:
    assert parse_tracing_env({}) is None
    assert parse_tracing_env({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}) is None


@pytest.mark.parametrize(
    "extra", [{"OTEL_SDK_DISABLED": "true"}, {"OTEL_SDK_DISABLED": "TRUE"},
              {"OTEL_TRACES_EXPORTER": "none"}],
)  # fmt: skip
def test_disabled_or_no_exporter_is_off(extra: dict[str, str]) -> None:
    assert parse_tracing_env(BASE | extra) is None


def test_endpoint_gets_v1_traces_and_the_traces_variant_is_used_as_is() -> None:
    config = parse_tracing_env(BASE)
    assert config is not None and config.endpoint == "http://collector:4318/v1/traces"
    config = parse_tracing_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/base/"})
    assert config is not None and config.endpoint == "http://c:4318/base/v1/traces"
    config = parse_tracing_env(BASE | {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t/x"})
    assert config is not None and config.endpoint == "https://t/x"


def test_defaults() -> None:
    config = parse_tracing_env(BASE, service_name="gatekeeper-worker")
    assert config is not None
    assert config.protocol == "http/protobuf"
    assert config.timeout_ms == 10_000
    assert config.sampler == "parentbased_always_on"
    assert dict(config.resource) == {"service.name": "gatekeeper-worker"}
    assert config.compression == ""


def test_headers_timeout_resource_sampler_and_traces_variants_win() -> None:
    config = parse_tracing_env(
        BASE
        | {
            "OTEL_EXPORTER_OTLP_HEADERS": "a=1",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "Authorization=Bearer%20s3cret, x-tenant = t1",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=ignored",
            "OTEL_SERVICE_NAME": "gk-eu",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        }
    )
    assert config is not None
    assert config.headers == (("Authorization", "Bearer s3cret"), ("x-tenant", "t1"))
    assert "s3cret" not in repr(config)  # headers may hold credentials
    assert config.timeout_ms == 2500
    assert config.protocol == "http/json"
    assert config.compression == "gzip"
    assert dict(config.resource) == {"deployment.environment": "prod", "service.name": "gk-eu"}
    assert (config.sampler, config.sampler_ratio) == ("parentbased_traceidratio", 0.25)


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
         "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
    ],
)  # fmt: skip
def test_a_bad_value_names_its_variable(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(TracingConfigError) as raised:
        parse_tracing_env(BASE | extra)
    assert str(raised.value).startswith(f"{variable}:")


def test_grpc_protocol_error_says_what_to_do() -> None:
    with pytest.raises(TracingConfigError, match=r"http/protobuf.*4318"):
        parse_tracing_env(BASE | {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_a_bad_variable_before_starting_anything(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = BASE | {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert main([command], env=env) == 2
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in capsys.readouterr().err
