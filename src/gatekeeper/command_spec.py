"""What a CLI verb is (cli.py turns each into a subcommand), and the exit codes every verb uses
(DESIGN.md §6: 0 ok, 1 runtime failure, 2 bad input)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import NamedTuple

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_OK", "CommandSpec"]

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class CommandSpec(NamedTuple):
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Mapping[str, str]], int]
