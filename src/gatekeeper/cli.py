"""The `gatekeeper` command line (DESIGN.md §6). Exit codes: 0 ok, 1 runtime failure, 2 bad input.

Each subcommand is one `Subcommand` entry: a name, its arguments, and a function
`run(args, env) -> exit code`. New subcommands are added to `SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

from gatekeeper.apiclient import KEYS, USAGE
from gatekeeper.benchmark.command import BENCH
from gatekeeper.config import ConfigError, LoadedConfig, load_config
from gatekeeper.demo import DEMO
from gatekeeper.directory.commands import DIRECTORY, IMPORT
from gatekeeper.envoyconfig import command as envoy_config
from gatekeeper.pipeline.commands import EXPORT, RECONCILE, WORKER
from gatekeeper.ratelimit import load_ratelimit_config
from gatekeeper.serve import add_serve_arguments, run_serve

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_OK", "SUBCOMMANDS", "Subcommand", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True, slots=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Mapping[str, str]], int]


def _check_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="policy file (YAML) to validate")


def check_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Validate FILE (and GATEKEEPER_* settings in `env`), and the envoyproxy/ratelimit config
    its settings name (as `serve` would load it): every issue to stderr, exit 2; else 0."""
    try:
        loaded = load_config(args.file, env=env)
        rls = loaded.settings.ratelimit_config
        domains = None if not rls else load_ratelimit_config(rls).domains
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        count = len(exc.issues)
        print(f"{count} error{'' if count == 1 else 's'}", file=sys.stderr)
        return EXIT_BAD_INPUT
    rls_summary = ""
    if domains is not None:
        rls_summary = f"; ratelimit config {rls}: {len(domains)} domain"
        rls_summary += "" if len(domains) == 1 else "s"
    print(f"ok: {summary(loaded)}{rls_summary}")
    return EXIT_OK


def summary(loaded: LoadedConfig) -> str:
    """`4 features, 2 prices, 2 plans, 2 customers, 3 routes`."""
    policy = loaded.policy
    counts = (
        (len(policy.features), "feature"),
        (len(policy.prices), "price"),
        (len(policy.plans), "plan"),
        (len(policy.customers), "customer"),
        (len(policy.routes), "route"),
    )
    return ", ".join(f"{n} {noun}{'' if n == 1 else 's'}" for n, noun in counts)


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand(
        name="check-config",
        help="validate a policy file and report every error with its line",
        add_arguments=_check_config_arguments,
        run=check_config,
    ),
    Subcommand(
        name="serve",
        help="serve Envoy ext_authz, rate limit and access log, and the gatekeeper gRPC API",
        add_arguments=add_serve_arguments,
        run=run_serve,
    ),
    Subcommand(*WORKER),
    Subcommand(*EXPORT),
    Subcommand(*RECONCILE),
    Subcommand(*IMPORT),
    Subcommand(*DIRECTORY),
    Subcommand(*BENCH),
    Subcommand(
        name="envoy-config",
        help=envoy_config.HELP,
        add_arguments=envoy_config.add_arguments,
        run=envoy_config.run_envoy_config,
    ),
    Subcommand(*DEMO),
    Subcommand(*KEYS),
    Subcommand(*USAGE),
)


def _version() -> str:
    try:
        return metadata.version("gatekeeper")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser(subcommands: Sequence[Subcommand] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper",
        description="Real-time enforcement of usage-based pricing beside Envoy.",
    )
    parser.add_argument("--version", action="version", version=f"gatekeeper {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in subcommands:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """Run the CLI; returns the exit code. `env` defaults to os.environ (tests pass a dict)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (argparse exits 2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    run: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.run
    return run(args, os.environ if env is None else env)
