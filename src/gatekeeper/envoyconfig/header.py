"""The comment block at the top of a generated bootstrap: what it wires, how it fails, and the
command that produced it. Written from the options, so every generated file explains itself."""

from __future__ import annotations

import shlex
import textwrap

from gatekeeper.envoyconfig.args import to_argv
from gatekeeper.envoyconfig.options import Address, EnvoyConfigOptions, Mode

__all__ = ["header"]

WIDTH = 96


def header(options: EnvoyConfigOptions) -> str:
    """Plain text (no `#`), paragraphs separated by blank lines."""
    parts = [
        _wrap(_title(options)),
        "\n".join(_diagram(options)),
        *(_wrap(p) for p in _notes(options)),
        _generated_by(options),
    ]
    return "\n\n".join(parts)


def _wrap(paragraph: str) -> str:
    return textwrap.fill(paragraph, WIDTH, break_on_hyphens=False, break_long_words=False)


def _title(o: EnvoyConfigOptions) -> str:
    if not o.ext_authz:
        return (
            "Envoy's rate limit filter pointed at gatekeeper's envoyproxy/ratelimit-compatible "
            "service: users of that service switch by repointing the cluster."
        )
    if o.sidecar:
        text = (
            "Sidecar: Envoy and gatekeeper in the same pod as the application, for clusters "
            "without a service mesh (the Helm chart's `sidecar.enabled` mode ships this file as "
            "Envoy's bootstrap). Every request is authorized by gatekeeper"
        )
    else:
        text = "Front proxy: every request is authorized by gatekeeper"
    if o.mode is Mode.HTTP:
        text += (
            " in ext_authz's HTTP mode (its lean HTTP/1.1 authorizer, the fast path: DESIGN.md §6)"
        )
    else:
        text += " in ext_authz's gRPC mode"
    if o.settlement:
        text += "; usage with a late-known quantity is settled from the gRPC access log (ALS)"
    return text + "; the upstream gets x-gatekeeper-customer and the plan's config headers."


def _diagram(o: EnvoyConfigOptions) -> list[str]:
    gk = o.gatekeeper_host
    upstream = "app" if o.sidecar else "upstream"
    rows = [f"  client ─► {_at(o.listen)} Envoy ─► {upstream} {o.upstream}"]
    legs: list[tuple[str, str]] = []
    if o.ext_authz and o.mode is Mode.HTTP:
        legs.append(("ext_authz (HTTP)", f"gatekeeper {Address(gk, o.authz_http_port)}"))
    elif o.ext_authz:
        legs.append(("ext_authz (gRPC)", f"gatekeeper {Address(gk, o.grpc_port)}"))
    if o.settlement:
        legs.append(("access log (settlement)", f"gatekeeper {Address(gk, o.grpc_port)}"))
    if o.rate_limit:
        legs.append(
            (f'ShouldRateLimit ("{o.rate_limit_domain}")', f"gatekeeper {Address(gk, o.grpc_port)}")
        )
    if o.otel_collector is not None:
        legs.append(("OTLP/HTTP traces", f"collector {o.otel_collector}/v1/traces"))
    width = max(len(leg) for leg, _ in legs)
    rows += [f"      {leg.ljust(width)} ─► {target}" for leg, target in legs]
    if o.sidecar and o.admin is not None:
        rows.append(
            f"  kubelet ─► 0.0.0.0:{o.sidecar_health_port} /ready ─► Envoy admin "
            f"({o.admin}, never exposed)"
        )
    return rows


def _at(address: Address) -> str:
    return str(address) if address.port else f"{address} (any free port)"


def _notes(o: EnvoyConfigOptions) -> list[str]:
    notes: list[str] = []
    if o.ext_authz and o.mode is Mode.HTTP:
        notes.append(
            "HTTP mode sends gatekeeper only the headers in allowed_headers (plus Host, Method, "
            "Path, Authorization), traceparent and tracestate always among them; per-route "
            "context_extensions are not sent, so usage comes from the policy's route table. A 5xx "
            "from gatekeeper (Redis down, fail-closed) is an authorization error here: Envoy "
            "answers status_on_error (503) itself."
        )
    elif o.ext_authz:
        notes.append(
            "gRPC mode sends gatekeeper the whole request context and per-route "
            "context_extensions (`--route-feature`); its 503 problem body reaches the client."
        )
    if o.ext_authz:
        chosen = (
            "true: requests pass unmetered"
            if o.failure_mode_allow
            else ("false: Envoy answers status_on_error (503), fail closed")
        )
        notes.append(
            "Failure behaviour (gatekeeper down, or Redis down with failure_mode: closed): "
            f"failure_mode_allow is {chosen}. Prefer gatekeeper's own `failure_mode: open` to "
            "failing open at the proxy: it still records the usage once Redis is back."
        )
    if o.rate_limit:
        descriptors = ", ".join(f"{key} from {header}" for key, header in o.rate_limit_descriptors)
        notes.append(
            f"Rate limit descriptors ({descriptors}) go to gatekeeper's ShouldRateLimit, domain "
            f'"{o.rate_limit_domain}": gatekeeper needs GATEKEEPER_RATELIMIT_CONFIG naming a '
            'config for it (GATEKEEPER_RATELIMIT_CONFIG=envoy/ratelimit has "edge"). Requests '
            "pass when the service is unreachable (failure_mode_deny: false)."
        )
    if o.sidecar:
        notes.append(
            "The chart rewrites the two ports marked `# chart: …` from its values "
            "(sidecar.envoy.port, sidecar.app.port); a test keeps "
            "charts/gatekeeper/files/envoy-sidecar.yaml byte-identical to envoy/sidecar.yaml."
        )
    return notes


def _generated_by(o: EnvoyConfigOptions) -> str:
    lines = ["Generated from envoy-data-plane's typed classes (change the options, not this file):"]
    line = "  gatekeeper envoy-config"
    for unit in _flag_units(to_argv(o)):
        if len(line) + 1 + len(unit) > WIDTH - 4:
            lines.append(line + " \\")
            line = "    "
        line += ("" if line.endswith("    ") else " ") + unit
    lines.append(line)
    lines.append("Validate: .venv/bin/envoy --mode validate --disable-hot-restart -c FILE")
    return "\n".join(lines)


def _flag_units(argv: list[str]) -> list[str]:
    """Each flag with its value, shell-quoted: the pieces a long command line breaks between."""
    units: list[str] = []
    for arg in argv:
        if arg.startswith("--") or not units:
            units.append(shlex.quote(arg))
        else:
            units[-1] += " " + shlex.quote(arg)
    return units
