"""`gatekeeper envoy-config`'s flags: argparse definition, flags → options, options → flags.

`to_argv(options)` is the shortest flag list that gives `options` back (defaults left out, a
fixed order); generated files name it in their header, and the shipped ones are produced by it.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from gatekeeper.envoyconfig.options import (
    Address,
    EnvoyConfigOptions,
    Mode,
    OptionsError,
    RouteFeature,
    parse_address,
    parse_duration,
    parse_route_feature,
)

__all__ = ["add_arguments", "options_from_args", "to_argv"]

DEFAULTS = EnvoyConfigOptions()
SIDECAR_LISTEN = Address("0.0.0.0", 10000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag, with the defaults of the shipped front proxy (envoy/front-proxy.yaml)."""
    d = DEFAULTS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "The shipped bootstraps under envoy/ are produced by this command; each one's header\n"
        "names its flags. Lists are comma-separated ('' = none). Durations: 0.5s, 500ms."
    )
    add = parser.add_argument
    add(
        "--mode",
        choices=[m.value for m in Mode],
        default=d.mode.value,
        help="ext_authz transport: http (gatekeeper's fast HTTP/1.1 authorizer) or grpc "
        "(context_extensions, metadata); default: %(default)s",
    )
    add(
        "--no-ext-authz",
        dest="ext_authz",
        action="store_false",
        help="no ext_authz filter (e.g. a rate-limit-only proxy)",
    )
    add(
        "--upstream",
        default=str(d.upstream),
        metavar="HOST:PORT",
        help="the protected service; default: %(default)s",
    )
    add(
        "--listen",
        metavar="HOST:PORT",
        help=f"Envoy's listener; default: {d.listen} ({SIDECAR_LISTEN} with --sidecar); port 0 = "
        "any free port",
    )
    add(
        "--admin",
        default=str(d.admin),
        metavar="HOST:PORT|none",
        help="Envoy's admin interface, or none; default: %(default)s",
    )
    add(
        "--gatekeeper",
        default=d.gatekeeper_host,
        metavar="HOST",
        help="gatekeeper's address (IP: STATIC cluster, name: STRICT_DNS); default: %(default)s",
    )
    add(
        "--grpc-port",
        type=int,
        default=d.grpc_port,
        metavar="PORT",
        help="gatekeeper's gRPC port (ext_authz gRPC, access log, rate limit); "
        "default: %(default)s",
    )
    add(
        "--authz-http-port",
        type=int,
        default=d.authz_http_port,
        metavar="PORT",
        help="gatekeeper's HTTP ext_authz port (--mode http); default: %(default)s",
    )
    add(
        "--authz-timeout",
        default=_duration(d.authz_timeout),
        metavar="DURATION",
        help="ext_authz timeout; default: %(default)s",
    )
    add(
        "--failure-mode-allow",
        action="store_true",
        help="let requests through unmetered when gatekeeper errs or is down (default: answer "
        "503, fail closed)",
    )
    add(
        "--authz-request-headers",
        default=",".join(d.authz_request_headers),
        metavar="NAMES",
        help="--mode http: request headers sent to gatekeeper beyond x-api-key, x-request-id, "
        "idempotency-key, traceparent, tracestate (cost headers, a trusted customer "
        "header); default: %(default)s",
    )
    add(
        "--plan-headers",
        default=",".join(d.plan_headers),
        metavar="NAMES",
        help="headers the policy's config features set upstream; default: %(default)s",
    )
    add(
        "--unmetered",
        default=",".join(d.unmetered_prefixes),
        metavar="PREFIXES",
        help="path prefixes without ext_authz (client copies of gatekeeper's headers dropped); "
        "default: %(default)s",
    )
    add(
        "--route-feature",
        action="append",
        default=[],
        metavar="PREFIX=FEATURE[:COST]",
        help="--mode grpc: a route whose requests consume FEATURE (x COST), sent as "
        "context_extensions (repeatable)",
    )
    add(
        "--settlement",
        action=argparse.BooleanOptionalAction,
        default=d.settlement,
        help="gRPC access log to gatekeeper settling reservations; default: on",
    )
    add(
        "--settle-headers",
        default=",".join(d.settle_headers),
        metavar="NAMES",
        help="response headers the access log carries (the policy's settle_header); "
        "default: %(default)s",
    )
    add(
        "--rate-limit",
        action=argparse.BooleanOptionalAction,
        default=d.rate_limit,
        help="Envoy's rate limit filter against gatekeeper's ShouldRateLimit; default: off",
    )
    add(
        "--rate-limit-domain",
        default=d.rate_limit_domain,
        metavar="DOMAIN",
        help="the rate limit domain; default: %(default)s",
    )
    add(
        "--rate-limit-descriptors",
        default=_pairs(d.rate_limit_descriptors),
        metavar="KEY=HEADER,...",
        help="descriptor entries from request headers; default: %(default)s "
        "(behind ext_authz, customer=x-gatekeeper-customer keys on the verified customer)",
    )
    add(
        "--rate-limit-timeout",
        default=_duration(d.rate_limit_timeout),
        metavar="DURATION",
        help="rate limit call timeout; default: %(default)s",
    )
    add(
        "--otel-collector",
        metavar="HOST:PORT",
        help="trace with Envoy's OpenTelemetry tracer, OTLP/HTTP to http://HOST:PORT/v1/traces",
    )
    add(
        "--sidecar",
        action="store_true",
        help="the sidecar shape: upstream cluster 'app', a readiness listener on 0.0.0.0:9903 "
        "proxying the admin's /ready",
    )
    add("--out", metavar="FILE", help="write here (default: stdout)")  # fmt: skip


def options_from_args(args: argparse.Namespace) -> EnvoyConfigOptions:
    """The options the parsed flags ask for. Raises OptionsError naming the bad flag."""
    listen = args.listen or str(SIDECAR_LISTEN if args.sidecar else DEFAULTS.listen)
    admin = None if args.admin == "none" else parse_address(args.admin, option="--admin")
    collector = args.otel_collector
    if not (args.ext_authz or args.settlement or args.rate_limit):
        # a plain proxy is a valid EnvoyConfigOptions (the bench's "Envoy alone"), not a request
        raise OptionsError(
            "nothing for gatekeeper to do: drop --no-ext-authz, or add --settlement or --rate-limit"
        )
    return EnvoyConfigOptions(
        mode=Mode(args.mode),
        ext_authz=args.ext_authz,
        listen=parse_address(listen, option="--listen"),
        admin=admin,
        upstream=parse_address(args.upstream, option="--upstream"),
        gatekeeper_host=args.gatekeeper,
        grpc_port=args.grpc_port,
        authz_http_port=args.authz_http_port,
        settlement=args.settlement,
        settle_headers=_names(args.settle_headers),
        rate_limit=args.rate_limit,
        rate_limit_domain=args.rate_limit_domain,
        rate_limit_descriptors=_descriptors(args.rate_limit_descriptors),
        rate_limit_timeout=parse_duration(args.rate_limit_timeout, option="--rate-limit-timeout"),
        failure_mode_allow=args.failure_mode_allow,
        authz_timeout=parse_duration(args.authz_timeout, option="--authz-timeout"),
        authz_request_headers=_names(args.authz_request_headers),
        plan_headers=_names(args.plan_headers),
        unmetered_prefixes=_names(args.unmetered),
        route_features=tuple(parse_route_feature(text) for text in args.route_feature),
        otel_collector=None
        if not collector
        else parse_address(collector, option="--otel-collector"),
        sidecar=args.sidecar,
    )


def to_argv(o: EnvoyConfigOptions) -> list[str]:
    """The flags that give `o` back through options_from_args, defaults left out."""
    d = DEFAULTS
    argv: list[str] = ["--mode", o.mode.value] if o.ext_authz else ["--no-ext-authz"]
    if o.sidecar:
        argv.append("--sidecar")
    if o.listen != (SIDECAR_LISTEN if o.sidecar else d.listen):
        argv += ["--listen", str(o.listen)]
    if o.admin != d.admin:
        argv += ["--admin", "none" if o.admin is None else str(o.admin)]
    if o.upstream != d.upstream:
        argv += ["--upstream", str(o.upstream)]
    for flag, value, default in (
        ("--gatekeeper", o.gatekeeper_host, d.gatekeeper_host),
        ("--grpc-port", str(o.grpc_port), str(d.grpc_port)),
        ("--authz-http-port", str(o.authz_http_port), str(d.authz_http_port)),
        ("--authz-timeout", _duration(o.authz_timeout), _duration(d.authz_timeout)),
        ("--authz-request-headers", ",".join(o.authz_request_headers),
         ",".join(d.authz_request_headers)),
        ("--plan-headers", ",".join(o.plan_headers), ",".join(d.plan_headers)),
        ("--unmetered", ",".join(o.unmetered_prefixes), ",".join(d.unmetered_prefixes)),
    ):  # fmt: skip
        if value != default:
            argv += [flag, value]
    if o.failure_mode_allow:
        argv.append("--failure-mode-allow")
    for feature in o.route_features:
        argv += ["--route-feature", _route_feature(feature)]
    argv.append("--settlement" if o.settlement else "--no-settlement")
    argv.append("--rate-limit" if o.rate_limit else "--no-rate-limit")
    for flag, value, default in (
        ("--settle-headers", ",".join(o.settle_headers), ",".join(d.settle_headers)),
        ("--rate-limit-domain", o.rate_limit_domain, d.rate_limit_domain),
        ("--rate-limit-descriptors", _pairs(o.rate_limit_descriptors),
         _pairs(d.rate_limit_descriptors)),
        ("--rate-limit-timeout", _duration(o.rate_limit_timeout), _duration(d.rate_limit_timeout)),
    ):  # fmt: skip
        if value != default:
            argv += [flag, value]
    if o.otel_collector is not None:
        argv += ["--otel-collector", str(o.otel_collector)]
    return argv


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _descriptors(text: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for part in _names(text):
        key, sep, header = part.partition("=")
        if not sep or not key or not header:
            raise OptionsError(f"--rate-limit-descriptors: {part!r} is not KEY=HEADER")
        pairs.append((key, header))
    return tuple(pairs)


def _pairs(pairs: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{key}={header}" for key, header in pairs)


def _route_feature(feature: RouteFeature) -> str:
    cost = "" if feature.cost is None else f":{feature.cost}"
    return f"{feature.prefix}={feature.feature}{cost}"


def _duration(value: timedelta) -> str:
    millis = value // timedelta(milliseconds=1)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"
