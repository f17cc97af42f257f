"""The `gatekeeper demo` subcommand: arguments → DemoOptions → Demo.run(). Exit 0 when stopped
by Ctrl-C/SIGTERM or --duration, 1 when a part fails (named), 2 for bad arguments."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path

from gatekeeper.command_spec import CommandSpec
from gatekeeper.demo.orchestrator import Demo, DemoOptions

__all__ = ["DEMO", "options_from_args"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    port = parser.add_argument
    port("--envoy-port", type=int, default=10000, help="Envoy listener (default 10000)")
    port("--http-port", type=int, default=8080, help="API and dashboard (default 8080)")
    port("--grpc-port", type=int, default=9191, help="gatekeeper gRPC (default 9191)")
    port("--authz-http-port", type=int, default=9192, help="ext_authz HTTP (default 9192)")
    port("--envoy-admin-port", type=int, default=0, help="Envoy admin (default: any free)")
    port("--upstream-port", type=int, default=0, help="sample LLM upstream (default: any free)")
    parser.add_argument("--no-traffic", action="store_true", help="start everything, send nothing")
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after SECONDS (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--dir",
        "--data-dir",
        dest="dir",
        type=Path,
        metavar="DIR",
        help="data directory: embedded Redis data, SQLite billing file, logs, policy "
        "(default: a new temp dir; reuse one to continue a previous run)",
    )


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """DemoOptions from parsed arguments; raises ValueError naming a bad one."""
    for flag in ("envoy_port", "http_port", "grpc_port", "authz_http_port",
                 "envoy_admin_port", "upstream_port"):  # fmt: skip
        value = getattr(args, flag)
        if not 0 <= value <= 65535:
            raise ValueError(f"--{flag.replace('_', '-')}: {value} is not a port (0-65535)")
    if args.duration is not None and args.duration <= 0:
        raise ValueError(f"--duration: {args.duration} must be more than 0 seconds")
    return DemoOptions(
        envoy_port=args.envoy_port,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        authz_http_port=args.authz_http_port,
        envoy_admin_port=args.envoy_admin_port,
        upstream_port=args.upstream_port,
        traffic=not args.no_traffic,
        duration_s=args.duration,
        directory=args.dir,
    )


def run_demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(Demo(options, env, out=sys.stdout, err=sys.stderr).run())


DEMO = CommandSpec(
    "demo",
    "everything on this machine: Redis, gatekeeper serve + worker, Envoy, a sample LLM API, "
    "traffic and the dashboard; Ctrl-C stops it all",
    _arguments,
    run_demo,
)
