"""The README's examples run as written: its Python blocks execute (and leave no embedded Redis
behind), every `gatekeeper VERB` it names exists, every command line in its shell blocks parses
with gatekeeper's own CLI parser, and every repository path those lines name is shipped."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gatekeeper.cli import VERBS, build_parser
from gatekeeper.store.datadir import DataDir

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


def _processes_in(directory: Path) -> list[int]:
    """Pids whose working directory is `directory` (the embedded redis-server runs in it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")) == directory:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("code", _blocks("python"), ids=lambda code: code.splitlines()[0])
def test_python_examples_run_and_leave_no_process(code: str, tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
    with tempfile.TemporaryDirectory(prefix="gkrd-") as root:  # short: unix socket limit
        data = DataDir.at(root)
        env["GATEKEEPER_DATA_DIR"] = root
        try:
            done = subprocess.run(
                [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True,
                text=True, timeout=90,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            left = _processes_in(data.redis_dir.resolve())
            assert not left, f"the example left a process running: {left}"
        finally:
            for pid in _processes_in(data.redis_dir.resolve()):  # never leave it to others
                os.kill(pid, signal.SIGKILL)


def test_there_are_examples_to_check() -> None:
    assert _blocks("python") and len(_blocks("sh")) > 5


def _command_lines() -> list[str]:
    lines = []
    for block in _blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _gatekeeper_args(line: str) -> list[str] | None:
    """The arguments after `gatekeeper` (or `.venv/bin/gatekeeper`) as the command word."""
    words = shlex.split(line)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value prefixes
        words.pop(0)
    if not words or Path(words[0]).name != "gatekeeper":
        return None
    args = words[1:]
    for i, word in enumerate(args):
        if word in ("|", "&&", ";", ">", "||"):
            return args[:i]
    return args


def test_every_gatekeeper_command_line_parses() -> None:
    parser = build_parser()
    checked = 0
    for line in _command_lines():
        args = _gatekeeper_args(line)
        if args is None:
            continue
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"README: `{line}` is refused by the CLI parser (exit {exc.code})")
        checked += 1
    assert checked >= 15


def test_every_gatekeeper_verb_named_exists() -> None:
    verbs = {verb.name for verb in VERBS}
    named = set(re.findall(r"`(?:\.venv/bin/)?gatekeeper ([a-z][a-z-]*)", README))
    named |= {args[0] for line in _command_lines() if (args := _gatekeeper_args(line))}
    assert named and named <= verbs, sorted(named - verbs)


def test_every_repository_path_a_command_names_is_shipped() -> None:
    for line in _command_lines():
        for word in shlex.split(line):
            path = word.split("=", 1)[-1]
            if re.match(r"(\./)?(src|envoy|scripts|bench|deploy|charts|docs|requirements)/", path):
                assert (REPO / path).exists(), f"README: `{line}` names {path}, not shipped"


def test_no_shell_example_leaves_a_glob_character_unquoted() -> None:
    """`curl http://…/events?limit=5` fails in zsh ("no matches found"): quote such URLs."""
    for line in _command_lines():
        outside = re.sub(r"'[^']*'|\"[^\"]*\"", "", line)
        assert not re.search(r"[?*\[]", outside), f"README: `{line}` has an unquoted glob"
