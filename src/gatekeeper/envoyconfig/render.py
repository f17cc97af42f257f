"""Block-style YAML for an Envoy bootstrap, with comments: a header block and notes by path.

PyYAML writes no comments, and the shipped bootstraps explain themselves in comments, so this
emits the (JSON-shaped) document itself: mappings in the order given (the proto field order
envoy-data-plane produces), sequences at their key's indentation, every scalar written by
PyYAML (so quoting is PyYAML's), and a note above a key or after a scalar where the builder
asked for one. `yaml.safe_load(render(doc, ...)) == doc` always holds (tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

__all__ = ["Note", "NotePath", "render"]

LINE_BREAKS = "\n\r\x85\u2028\u2029"  # YAML's (1.1)
# a path into the document: mapping keys and sequence indexes
NotePath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Note:
    """A comment `above` a key (one or more lines) and/or `after` a scalar, on its line."""

    above: str = ""
    after: str = ""


def render(document: Mapping[str, object], *, header: str, notes: Mapping[NotePath, Note]) -> str:
    """The YAML text: `header` as `#` lines, then `document` in block style. Raises TypeError
    on a value that is not JSON-shaped (mapping, sequence, str, int, float, bool, None)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    _Emitter(lines, notes).mapping(document, 0, (), dash=False)
    return "\n".join(lines) + "\n"


@dataclass(slots=True)
class _Emitter:
    lines: list[str]
    notes: Mapping[NotePath, Note]

    def mapping(
        self, node: Mapping[str, object], indent: int, path: NotePath, *, dash: bool
    ) -> None:
        for index, (key, value) in enumerate(node.items()):
            here = (*path, key)
            first_of_item = dash and index == 0
            lead = " " * (indent - 2) + "- " if first_of_item else " " * indent
            note = self.notes.get(here, Note())
            comment_indent = " " * (indent - 2 if first_of_item else indent)
            self.lines.extend(f"{comment_indent}# {line}" for line in note.above.splitlines())
            head = f"{lead}{_scalar(key)}:"
            if _is_container(value) and value:
                self.lines.append(head + _after(note))
                if isinstance(value, Mapping):
                    self.mapping(value, indent + 2, here, dash=False)
                else:
                    self.sequence(value, indent, here)  # type: ignore[arg-type]
            else:
                self.lines.append(f"{head} {_scalar(value)}{_after(note)}")

    def sequence(self, items: Sequence[object], indent: int, path: NotePath) -> None:
        for index, item in enumerate(items):
            here = (*path, index)
            if isinstance(item, Mapping) and item:
                self.mapping(item, indent + 2, here, dash=True)
            elif _is_container(item) and item:
                self.lines.append(" " * indent + "-")
                self.sequence(item, indent + 2, here)  # type: ignore[arg-type]
            else:
                after = _after(self.notes.get(here, Note()))
                self.lines.append(f"{' ' * indent}- {_scalar(item)}{after}")


def _after(note: Note) -> str:
    return f"  # {note.after}" if note.after else ""


def _is_container(value: object) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes)
    )


def _scalar(value: object) -> str:
    """One scalar (or an empty container) as PyYAML writes it in flow style, on one line."""
    if _is_container(value):
        if value:
            raise TypeError("a non-empty container is not a scalar")
        return "{}" if isinstance(value, Mapping) else "[]"
    if value is not None and not isinstance(value, str | int | float | bool):
        raise TypeError(f"cannot write {type(value).__name__} as YAML")
    text = _dump(value, style=None)
    # PyYAML breaks a plain or single-quoted string with line breaks over lines: double quotes
    # escape them
    return _dump(value, style='"') if any(c in text for c in LINE_BREAKS) else text


def _dump(value: object, *, style: str | None) -> str:
    text = yaml.safe_dump(
        value, default_flow_style=True, default_style=style, width=1 << 30, allow_unicode=True
    )
    return text.removesuffix("\n").removesuffix("\n...")
