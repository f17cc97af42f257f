"""What `gatekeeper envoy-config` is asked for: one frozen dataclass, parsed and validated here.

Nothing here imports envoy-data-plane (~450 ms): `serve` and the worker never load it, and the
CLI builds and checks its options before paying for the import.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

__all__ = [
    "Address",
    "EnvoyConfigOptions",
    "Mode",
    "OptionsError",
    "RouteFeature",
    "parse_address",
    "parse_duration",
    "parse_route_feature",
]

HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")  # RFC 9110 token, lowercase (HTTP/2)
DESCRIPTOR_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")


class OptionsError(ValueError):
    """An option is malformed or contradicts another; the message names the option."""


class Mode(StrEnum):
    """ext_authz transport: Envoy's `http_service` (the fast path) or `grpc_service`."""

    HTTP = "http"
    GRPC = "grpc"


@dataclass(frozen=True, slots=True)
class Address:
    """A host (IP literal or DNS name) and a TCP port (0 = any free port, for listeners)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        """True for an IP literal: a STATIC cluster can point at it (a name needs DNS)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class RouteFeature:
    """A path prefix whose requests consume `feature` (× `cost`), sent by Envoy itself as the
    route's ext_authz `context_extensions` (gRPC mode only)."""

    prefix: str
    feature: str
    cost: int | None = None


@dataclass(frozen=True, slots=True)
class EnvoyConfigOptions:
    """Everything the generated bootstrap depends on. Defaults are the shipped front proxy's
    (`envoy/front-proxy.yaml`) and DESIGN.md §6's ports. Raises OptionsError when built with
    contradicting or malformed values."""

    mode: Mode = Mode.HTTP
    ext_authz: bool = True
    listen: Address = Address("127.0.0.1", 10000)
    admin: Address | None = Address("127.0.0.1", 9901)
    upstream: Address = Address("127.0.0.1", 8000)
    gatekeeper_host: str = "127.0.0.1"
    grpc_port: int = 9191
    authz_http_port: int = 9192
    settlement: bool = True
    settle_headers: tuple[str, ...] = ("x-usage-total-tokens",)
    rate_limit: bool = False
    rate_limit_domain: str = "edge"
    # descriptor key -> request header, in one descriptor (envoyproxy/ratelimit's format)
    rate_limit_descriptors: tuple[tuple[str, str], ...] = (("client", "x-client-id"),)
    rate_limit_timeout: timedelta = timedelta(milliseconds=250)
    failure_mode_allow: bool = False
    authz_timeout: timedelta = timedelta(milliseconds=500)
    # HTTP mode: request headers sent to the authorizer beyond the fixed identity set
    authz_request_headers: tuple[str, ...] = ("x-token-count",)
    # headers the policy's config features set upstream (the demo policy's `x-model-tier`)
    plan_headers: tuple[str, ...] = ("x-model-tier",)
    unmetered_prefixes: tuple[str, ...] = ("/healthz",)
    route_features: tuple[RouteFeature, ...] = ()
    otel_collector: Address | None = None
    sidecar: bool = False
    sidecar_health_port: int = 9903

    def __post_init__(self) -> None:
        for name in ("grpc_port", "authz_http_port", "sidecar_health_port"):
            _check_port(name, getattr(self, name), allow_zero=False)
        for name in ("listen", "upstream"):
            _check_port(name, getattr(self, name).port, allow_zero=name == "listen")
        if self.admin is not None:
            _check_port("admin", self.admin.port, allow_zero=True)
        if self.otel_collector is not None:
            _check_port("otel_collector", self.otel_collector.port, allow_zero=False)
        if not self.gatekeeper_host:
            raise OptionsError("--gatekeeper: empty host")
        for name in ("authz_timeout", "rate_limit_timeout"):
            if getattr(self, name) <= timedelta(0):
                raise OptionsError(f"--{name.replace('_', '-')}: must be positive")
        headers = (*self.settle_headers, *self.authz_request_headers, *self.plan_headers)
        for header in (*headers, *(h for _, h in self.rate_limit_descriptors)):
            if not HEADER_NAME.match(header):
                raise OptionsError(f"{header!r} is not a lowercase HTTP header name")
        for key, _ in self.rate_limit_descriptors:
            if not DESCRIPTOR_KEY.match(key):
                raise OptionsError(f"--rate-limit-descriptor: {key!r} is not a descriptor key")
        if self.rate_limit and not self.rate_limit_descriptors:
            raise OptionsError("--rate-limit needs at least one --rate-limit-descriptor")
        if not self.rate_limit_domain:
            raise OptionsError("--rate-limit-domain: empty")
        for prefix in (*self.unmetered_prefixes, *(r.prefix for r in self.route_features)):
            if not prefix.startswith("/"):
                raise OptionsError(f"route prefix {prefix!r} does not start with '/'")
        self._check_combinations()

    def _check_combinations(self) -> None:
        if self.route_features and not (self.ext_authz and self.mode is Mode.GRPC):
            raise OptionsError(
                "--route-feature needs --mode grpc: Envoy sends context_extensions to the "
                "authorizer in gRPC mode only (in HTTP mode use the policy's routes)"
            )
        if self.sidecar and not self.ext_authz:
            raise OptionsError("--sidecar needs ext_authz (drop --no-ext-authz)")
        if self.sidecar and self.admin is None:
            raise OptionsError("--sidecar needs --admin: its readiness listener proxies /ready")

    @property
    def needs_grpc_cluster(self) -> bool:
        """Whether anything talks to gatekeeper's gRPC port (ext_authz gRPC, ALS, RLS)."""
        grpc_authz = self.ext_authz and self.mode is Mode.GRPC
        return grpc_authz or self.settlement or self.rate_limit


def _check_port(name: str, port: int, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise OptionsError(f"--{name.replace('_', '-')}: port {port} not in {low}..65535")


def parse_address(text: str, *, option: str) -> Address:
    """`HOST:PORT` or `[IPv6]:PORT` → Address. Raises OptionsError naming `option`."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit():
        raise OptionsError(f"{option}: {text!r} is not HOST:PORT")
    port = int(port_text)
    if port > 65535:
        raise OptionsError(f"{option}: port {port} not in 0..65535")
    return Address(host, port)


def parse_duration(text: str, *, option: str) -> timedelta:
    """`0.5s`, `500ms` or `0.5` (seconds) → timedelta, millisecond resolution. Raises
    OptionsError naming `option`."""
    found = DURATION.match(text.strip())
    if found is None:
        raise OptionsError(f"{option}: {text!r} is not a duration (e.g. 0.5s, 500ms)")
    number, unit = float(found.group(1)), found.group(2) or "s"
    millis = number if unit == "ms" else number * 1000
    if millis != round(millis):
        raise OptionsError(f"{option}: {text!r} is finer than a millisecond")
    return timedelta(milliseconds=round(millis))


def parse_route_feature(text: str) -> RouteFeature:
    """`PREFIX=FEATURE[:COST]`, e.g. `/v1/images=chat_requests:5`. Raises OptionsError."""
    prefix, sep, rest = text.partition("=")
    feature, _, cost = rest.partition(":")
    if not sep or not prefix or not feature or (cost and not cost.isdigit()):
        raise OptionsError(f"--route-feature: {text!r} is not PREFIX=FEATURE[:COST]")
    return RouteFeature(prefix, feature, int(cost) if cost else None)
