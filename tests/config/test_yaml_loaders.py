"""libyaml's parser (the fast one, used when PyYAML has it) reads every file exactly as the
pure-Python parser does: the same trees, lines, raw texts, plain flags and issues (a syntax
error at the same line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

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


# json.dumps writes a character past U+FFFF as a surrogate pair of escapes, which YAML refuses
# (so such a record never compiled before `from_plain`): the comparison is over the BMP
_BMP = st.characters(exclude_categories=["Cs"], max_codepoint=0xFFFF)
_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    # YAML 1.1 reads a float only with a '.' in it (json writes 1e+20 without one)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: "e" not in repr(f))
    | st.text(_BMP, max_size=20)
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(_BMP, max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_JSON)
@settings(max_examples=300, deadline=None)
def test_plain_data_reads_as_its_json_text_would(value: object) -> None:
    """A directory record is compiled from its data directly (`from_plain`), not written out
    and parsed again: the tree is the one the YAML parser gives for its JSON text."""
    parsed = load_yaml(json.dumps(value), source="t", issues=Issues("t"))
    assert yamlsrc.from_plain(value) == parsed
