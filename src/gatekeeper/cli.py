"""The `gatekeeper` command line (DESIGN.md §6). Exit codes: 0 ok, 1 runtime failure, 2 bad input.

Each subcommand is one `CommandSpec`: a name, its arguments, and a function
`run(args, env) -> exit code`, defined in its own module and named in `VERBS`, which imports
only the one being run (all of them for the top-level help): `gatekeeper check-config` does not
pay for importing the server, the worker and the bench (~1.3 s).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

from gatekeeper.command_spec import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, CommandSpec
from gatekeeper.config import ConfigError, LoadedConfig, load_config

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_OK", "VERBS", "Verb", "main"]


def _check_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="policy file (YAML) to validate")


def check_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Validate FILE (and GATEKEEPER_* settings in `env`), and the envoyproxy/ratelimit config
    its settings name (as `serve` would load it): every issue to stderr, exit 2; else 0."""
    try:
        loaded = load_config(args.file, env=env)
        rls = loaded.settings.ratelimit_config
        domains = None
        if rls:
            from gatekeeper.ratelimit import load_ratelimit_config  # the server's package

            domains = load_ratelimit_config(rls).domains
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


CHECK_CONFIG = CommandSpec(
    "check-config",
    "validate a policy file and report every error with its line",
    _check_config_arguments,
    check_config,
)


@dataclass(frozen=True, slots=True)
class Verb:
    """A subcommand by name; `spec` is "module:attribute" of its definition (a CommandSpec, or
    a tuple of the same fields), imported by `load` only."""

    name: str
    spec: str

    def load(self) -> CommandSpec:
        module, _, attribute = self.spec.partition(":")
        return CommandSpec(*getattr(importlib.import_module(module), attribute))


VERBS: tuple[Verb, ...] = (
    Verb("check-config", "gatekeeper.cli:CHECK_CONFIG"),
    Verb("serve", "gatekeeper.serve:SERVE"),
    Verb("worker", "gatekeeper.pipeline.commands:WORKER"),
    Verb("export", "gatekeeper.pipeline.commands:EXPORT"),
    Verb("reconcile", "gatekeeper.pipeline.commands:RECONCILE"),
    Verb("import", "gatekeeper.directory.commands:IMPORT"),
    Verb("directory", "gatekeeper.directory.commands:DIRECTORY"),
    Verb("bench", "gatekeeper.benchmark.command:BENCH"),
    Verb("envoy-config", "gatekeeper.envoyconfig.command:ENVOY_CONFIG"),
    Verb("demo", "gatekeeper.demo:DEMO"),
    Verb("keys", "gatekeeper.apiclient:KEYS"),
    Verb("usage", "gatekeeper.apiclient:USAGE"),
)


def _version() -> str:
    try:
        return metadata.version("gatekeeper")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser(subcommands: Sequence[CommandSpec] | None = None) -> argparse.ArgumentParser:
    """The parser of `subcommands` (default: every verb's)."""
    if subcommands is None:
        subcommands = [verb.load() for verb in VERBS]
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
    words = list(sys.argv[1:] if argv is None else argv)
    chosen = [verb.load() for verb in VERBS if words and verb.name == words[0]]
    parser = build_parser(chosen or None)  # a verb named first: only its module is imported
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # --help, --version, usage errors (argparse exits 2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    run: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.run
    return run(args, os.environ if env is None else env)
