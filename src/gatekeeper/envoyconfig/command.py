"""`gatekeeper envoy-config`: options from flags, the bootstrap to a file or stdout.

Builds and checks the options first, then imports the generator (envoy-data-plane, ~450 ms):
a bad flag is answered at once, and no other verb ever pays for the import.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from gatekeeper.command_spec import CommandSpec
from gatekeeper.envoyconfig.args import add_arguments, options_from_args
from gatekeeper.envoyconfig.options import EnvoyConfigOptions, OptionsError

__all__ = ["ENVOY_CONFIG", "HELP", "add_arguments", "parse_options", "run_envoy_config"]

HELP = "write an Envoy bootstrap wired to gatekeeper (ext_authz, settlement, rate limit, tracing)"
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def parse_options(argv: Sequence[str]) -> EnvoyConfigOptions:
    """The options a flag list asks for (as the CLI parses it). Raises OptionsError; an
    argparse usage error exits 2 (SystemExit) as on the command line."""
    parser = argparse.ArgumentParser(prog="gatekeeper envoy-config")
    add_arguments(parser)
    return options_from_args(parser.parse_args(list(argv)))


def run_envoy_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Exit 0 written; 2 on a bad or contradicting option (named on stderr); 1 when --out
    cannot be written."""
    try:
        options = options_from_args(args)
    except OptionsError as exc:
        print(f"gatekeeper envoy-config: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from gatekeeper.envoyconfig.build import bootstrap_yaml  # envoy-data-plane: only here

    text = bootstrap_yaml(options)
    if not args.out:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"gatekeeper envoy-config: cannot write {args.out}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


ENVOY_CONFIG = CommandSpec("envoy-config", HELP, add_arguments, run_envoy_config)
