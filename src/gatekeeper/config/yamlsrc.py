"""YAML with line numbers and raw scalar text.

PyYAML composes the document into nodes (which keep their source marks); this module turns
them into small immutable `YMap` / `YSeq` / `Scalar` trees. Each scalar keeps both its
constructed value (int, bool, datetime, ...) and its raw source text, so money like
`unit_price: 0.002` is read from "0.002" and never goes through a float. Merge keys (`<<`)
and aliases work; duplicate keys are reported.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import yaml

from gatekeeper.config.errors import ConfigError, ConfigIssue, Issues

__all__ = [
    "Entry",
    "Node",
    "Scalar",
    "YMap",
    "YSeq",
    "from_plain",
    "item_path",
    "key_path",
    "load_yaml",
]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 1_000_000  # alias expansion guard ("billion laughs")
_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# libyaml's parser when PyYAML was built with it (its wheels are): ~10x faster on a file that
# lists 100,000 customers; the same nodes, marks and errors as the pure-Python one.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def key_path(path: str, key: str) -> str:
    """`plans` + `pro` -> `plans.pro`; keys with other characters are quoted: `customers["a.b"]`."""
    part = f".{key}" if _SIMPLE_KEY.match(key) else f'["{key}"]'
    if not path:
        return part.lstrip(".")
    return path + part


def item_path(path: str, index: int) -> str:
    """`routes` + 0 -> `routes[0]`."""
    return f"{path}[{index}]"


# Scalar and Entry are NamedTuples, not frozen dataclasses: a file of 100,000 customers has
# ~1.6 million of them, and a NamedTuple is built in ~0.4 µs against ~1.1 µs (~1.2 s of a
# check-config). Immutable all the same; nothing compares them with plain tuples.
class Scalar(NamedTuple):
    value: object  # as YAML constructs it: str, int, float, bool, None, datetime, date, ...
    raw: str  # the text as written (decoded for quoted scalars)
    plain: bool  # unquoted, so `raw` is exactly the source text
    line: int  # 1-based


class Entry(NamedTuple):
    key: str
    key_line: int
    value: Node


@dataclass(frozen=True, slots=True)
class YMap:
    entries: Mapping[str, Entry]
    line: int  # the line of the key that holds this mapping, else where it starts

    def get(self, key: str) -> Node | None:
        entry = self.entries.get(key)
        return None if entry is None else entry.value

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class YSeq:
    items: tuple[Node, ...]
    line: int


Node = Scalar | YMap | YSeq


def load_yaml(text: str, *, source: str, issues: Issues) -> Node | None:
    """Parse one YAML document; None for an empty document.

    Raises ConfigError (with the line) on a YAML syntax error. Duplicate keys, unsupported tags
    and recursive aliases are recorded in `issues` and parsing goes on.
    """
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        return _Converter(loader, issues).convert(root, None, "")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise ConfigError(
            [ConfigIssue("", line, f"YAML syntax error: {problem}", source)], source=source
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            [ConfigIssue("", None, f"YAML error: {exc}", source)], source=source
        ) from None
    finally:
        loader.dispose()


def from_plain(value: object, line: int = 1) -> Node:
    """Plain JSON data (dicts with string keys, lists, str, int, float, bool, None) as the nodes
    `load_yaml(json.dumps(value))` gives, without writing and parsing the text: strings are
    quoted scalars, everything else plain, every node on `line` (JSON text is one line).
    A directory record is read this way once per compile, so this is on the miss path."""
    if isinstance(value, Mapping):
        entries = {str(k): Entry(str(k), line, from_plain(v, line)) for k, v in value.items()}
        return YMap(MappingProxyType(entries), line)
    if isinstance(value, list | tuple):
        return YSeq(tuple(from_plain(item, line) for item in value), line)
    if isinstance(value, str):
        return Scalar(value, value, False, line)
    if value is None:
        return Scalar(None, "null", True, line)
    if isinstance(value, bool):
        return Scalar(value, "true" if value else "false", True, line)
    if isinstance(value, float) and not math.isfinite(value):
        text = json.dumps(value)  # NaN, Infinity: plain text YAML reads as a string
        return Scalar(text, text, True, line)
    if isinstance(value, int | float):
        return Scalar(value, json.dumps(value), True, line)
    raise TypeError(f"not JSON data: {type(value).__name__}")


_At = tuple["_At", str | int] | str
"""Where a node is: (where its parent is, its key or index), or a path. Joined into a path
(`_path`) only for an issue: a file of 100,000 customers has over a million nodes."""


def _path(at: _At) -> str:
    parts: list[str | int] = []
    while isinstance(at, tuple):
        at, part = at
        parts.append(part)
    path = at
    for part in reversed(parts):
        path = item_path(path, part) if isinstance(part, int) else key_path(path, part)
    return path


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, issues: Issues) -> None:  # or CSafeLoader
        self._loader = loader
        self._issues = issues
        self._active: set[int] = set()
        self._count = 0

    def convert(self, node: yaml.Node, key_line: int | None, at: _At) -> Node:
        self._count += 1
        if self._count > _MAX_NODES:
            raise yaml.YAMLError("document too large after alias expansion")
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, line, at)
        if id(node) in self._active:
            self._issues.add(_path(at), line, "recursive YAML alias")
            return Scalar(None, "", True, line)
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = tuple(
                    self.convert(item, None, (at, i)) for i, item in enumerate(node.value)
                )
                return YSeq(items, key_line or line)
            assert isinstance(node, yaml.MappingNode)
            return YMap(MappingProxyType(self._entries(node, at)), key_line or line)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, line: int, at: _At) -> Scalar:
        # a scalar's constructor straight from the table: construct_object's bookkeeping
        # (recursion guard, object cache) is for collections, and cost most of a large file
        construct = self._loader.yaml_constructors.get(node.tag)
        try:
            if construct is None:
                value = self._loader.construct_object(node, deep=True)
            else:
                value = construct(self._loader, node)
        except yaml.constructor.ConstructorError:
            self._issues.add(_path(at), line, f"unsupported YAML tag {node.tag}")
            value = node.value
        # a plain scalar's style is None from PyYAML's parser and '' from libyaml's
        return Scalar(value, str(node.value), not node.style, line)

    def _entries(self, node: yaml.MappingNode, at: _At) -> dict[str, Entry]:
        merged: dict[str, Entry] = {}
        own: dict[str, Entry] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                merged.update(self._merge_source(value_node, key_line, at))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._issues.add(_path(at), key_line, "mapping keys must be plain scalars")
                continue
            key = str(key_node.value)
            if key in own:
                first = own[key].key_line
                self._issues.add(
                    key_path(_path(at), key),
                    key_line,
                    f"duplicate key '{key}' (first at line {first})",
                )
                continue
            own[key] = Entry(key, key_line, self.convert(value_node, key_line, (at, key)))
        return {**merged, **own}

    def _merge_source(self, node: yaml.Node, key_line: int, at: _At) -> dict[str, Entry]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        result: dict[str, Entry] = {}
        # Earlier sources win in a YAML merge list, so apply them last.
        for source in reversed(sources):
            converted = self.convert(source, key_line, at)
            if not isinstance(converted, YMap):
                self._issues.add(_path(at), key_line, "'<<' merges only mappings")
                continue
            result.update(converted.entries)
        return result
