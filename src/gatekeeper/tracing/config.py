"""Tracing settings from the standard OpenTelemetry variables, read from a Mapping passed in.

Tracing is on only when an OTLP endpoint is named (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
`OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`) and neither `OTEL_SDK_DISABLED=true` nor
`OTEL_TRACES_EXPORTER=none` says otherwise; `parse_tracing_env` then returns a TracingConfig,
else None. Every `OTEL_EXPORTER_OTLP_*` setting has a `_TRACES_` variant that wins over it.
A value gatekeeper cannot honour is a TracingConfigError naming the variable (exit 2 at start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = ["TracingConfig", "TracingConfigError", "parse_tracing_env"]

PROTOBUF, JSON = "http/protobuf", "http/json"
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


class TracingConfigError(ValueError):
    """An OTEL_* variable gatekeeper cannot honour; the message names it."""


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """What the exporter, the sampler and the batch processor need. Times in milliseconds."""

    endpoint: str  # the full traces URL: POST target
    protocol: str = PROTOBUF  # http/protobuf | http/json
    # may carry credentials (e.g. an Authorization header): never in a repr
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    timeout_ms: int = 10_000
    compression: str = ""  # "" | "gzip"
    certificate: str | None = None  # CA bundle file for https
    sampler: str = "parentbased_always_on"
    sampler_ratio: float = 1.0
    resource: tuple[tuple[str, str], ...] = ()  # OTEL_RESOURCE_ATTRIBUTES + service.name
    schedule_delay_ms: int = 5_000
    export_timeout_ms: int = 30_000
    max_queue_size: int = 2_048
    max_export_batch_size: int = 512


def _get(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(variable, value) of OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name>."""
    for var in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = env.get(var, "").strip()
        if value:
            return var, value
    return None


def _pairs(var: str, value: str) -> tuple[tuple[str, str], ...]:
    """`k1=v1,k2=v2` (W3C baggage-like, values percent-decoded), as OTEL_*_HEADERS and
    OTEL_RESOURCE_ATTRIBUTES are written."""
    out: list[tuple[str, str]] = []
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise TracingConfigError(f"{var}: {item.strip()!r} is not key=value")
        out.append((unquote(key.strip()), unquote(val.strip())))
    return tuple(out)


def _int(env: Mapping[str, str], var: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise TracingConfigError(f"{var}: {raw!r} is not an integer") from None
    if value < minimum:
        raise TracingConfigError(f"{var}: {value} is below {minimum}")
    return value


def _endpoint(env: Mapping[str, str]) -> str | None:
    specific = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    var, url = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", specific
    if not specific:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        if not base:
            return None
        var, url = "OTEL_EXPORTER_OTLP_ENDPOINT", base.rstrip("/") + "/v1/traces"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TracingConfigError(f"{var}: {url!r} is not an http(s) URL")
    return url


def _sampler(env: Mapping[str, str]) -> tuple[str, float]:
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if name not in _SAMPLERS:
        raise TracingConfigError(
            f"OTEL_TRACES_SAMPLER: {name!r} is not one of {', '.join(_SAMPLERS)}"
        )
    raw = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    ratio = 1.0
    if raw and name.endswith("traceidratio"):
        try:
            ratio = float(raw)
        except ValueError:
            raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG: {raw!r} is not a number") from None
        if not 0.0 <= ratio <= 1.0:
            raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG: {ratio} is not within [0, 1]")
    return name, ratio


def _resource(env: Mapping[str, str], default_service: str) -> tuple[tuple[str, str], ...]:
    attrs = dict(_pairs("OTEL_RESOURCE_ATTRIBUTES", env.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    service = env.get("OTEL_SERVICE_NAME", "").strip()
    if service:
        attrs["service.name"] = service
    attrs.setdefault("service.name", default_service)
    return tuple(attrs.items())


def parse_tracing_env(
    env: Mapping[str, str], *, service_name: str = "gatekeeper"
) -> TracingConfig | None:
    """The tracing config `env` asks for, or None when tracing is off (the default).

    `service_name` is the default `service.name` (OTEL_SERVICE_NAME, or a service.name in
    OTEL_RESOURCE_ATTRIBUTES, wins). Raises TracingConfigError naming the variable at fault.
    """
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = {
        e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if e.strip()
    }
    if not exporters or exporters == {"none"}:
        return None
    if exporters != {"otlp"}:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER: {', '.join(sorted(exporters))} is not supported "
            "(gatekeeper exports OTLP over HTTP: otlp, or none)"
        )
    endpoint = _endpoint(env)
    if endpoint is None:
        return None
    protocol = PROTOBUF
    if (found := _get(env, "PROTOCOL")) is not None:
        var, protocol = found[0], found[1].lower()
        if protocol == "grpc":
            raise TracingConfigError(
                f"{var}: grpc is not supported: gatekeeper exports OTLP over HTTP "
                f"(set {var}=http/protobuf and point the endpoint at the collector's "
                "OTLP/HTTP port, usually 4318)"
            )
        if protocol not in (PROTOBUF, JSON):
            raise TracingConfigError(f"{var}: {protocol!r} is not http/protobuf or http/json")
    headers: tuple[tuple[str, str], ...] = ()
    if (found := _get(env, "HEADERS")) is not None:
        headers = _pairs(found[0], found[1])
    timeout_ms = 10_000
    if (found := _get(env, "TIMEOUT")) is not None:
        timeout_ms = _int({found[0]: found[1]}, found[0], 10_000, minimum=1)
    compression = ""
    if (found := _get(env, "COMPRESSION")) is not None:
        compression = found[1].lower()
        if compression == "none":
            compression = ""
        elif compression != "gzip":
            raise TracingConfigError(f"{found[0]}: {found[1]!r} is not gzip or none")
    certificate = found[1] if (found := _get(env, "CERTIFICATE")) is not None else None
    sampler, ratio = _sampler(env)
    config = TracingConfig(
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        timeout_ms=timeout_ms,
        compression=compression,
        certificate=certificate,
        sampler=sampler,
        sampler_ratio=ratio,
        resource=_resource(env, service_name),
        schedule_delay_ms=_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5_000),
        export_timeout_ms=_int(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000, minimum=1),
        max_queue_size=_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2_048, minimum=1),
        max_export_batch_size=_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, minimum=1),
    )
    if config.max_export_batch_size > config.max_queue_size:
        raise TracingConfigError(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: must not exceed OTEL_BSP_MAX_QUEUE_SIZE "
            f"({config.max_queue_size})"
        )
    return config
