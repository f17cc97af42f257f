"""libyaml's parser (the fast one, used when PyYAML has it) reads every file exactly as the
pure-Python parser does: the same trees, lines, raw texts, plain flags and issues (a syntax
error at the same line)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gatekeeper.config import yamlsrc
from gatekeeper.config.errors import ConfigError, Issues
from gatekeeper.config.yamlsrc import Node, load_yaml

HERE = Path(__file__).resolve().parent
FILES = sorted(
    [
        HERE.parents[1] / "src" / "gatekeeper" / "data" / "demo.yaml",
        HERE.parents[1] / "tests" / "e2e" / "policy.yaml",
        *(HERE / "bad").glob("*.yaml"),
    ]
)


def _read(text: str, loader: type[yaml.SafeLoader], monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(yamlsrc, "_LOADER", loader)
    issues = Issues("t.yaml")
    try:
        tree: Node | None = load_yaml(text, source="t.yaml", issues=issues)
    except ConfigError as exc:  # a syntax error: the same line (libyaml words it its own way)
        return ("error", [(i.line, i.message.split(":")[0]) for i in exc.issues])
    return (tree, [str(issue) for issue in issues.sorted()])


@pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"), reason="PyYAML without libyaml")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_libyaml_and_pure_python_read_the_same(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = path.read_text()
    fast = _read(text, yaml.CSafeLoader, monkeypatch)
    pure = _read(text, yaml.SafeLoader, monkeypatch)
    assert fast == pure


def test_the_fast_parser_is_the_one_in_use() -> None:
    assert yamlsrc._LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
