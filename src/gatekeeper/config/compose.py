"""The policy file with run-time changes (admin API) composed in, validated as one document.

A run-time change is a document in the policy file's own shape — one plan under `plans:` or one
customer under `customers:` — kept as plain JSON. `compose_policy` replaces (or adds, or with
None removes) those entries in the file's parsed tree and parses the result with the same parser
as `check-config`, so a change is valid exactly when the file would be valid with it written in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from gatekeeper.config.errors import ConfigError, ConfigIssue, Issues
from gatekeeper.config.policy_parser import parse_policy
from gatekeeper.config.yamlsrc import Entry, Node, Scalar, YMap, YSeq, load_yaml
from gatekeeper.model import Policy, frozen_map

__all__ = ["Changes", "compose_policy", "to_plain"]

Doc = Mapping[str, object]
SOURCE = "<admin API>"


@dataclass(frozen=True, slots=True)
class Changes:
    """Entries that replace the file's: a document, or None to remove the file's entry."""

    plans: Mapping[str, Doc | None] = field(default_factory=frozen_map)
    customers: Mapping[str, Doc | None] = field(default_factory=frozen_map)

    def __bool__(self) -> bool:
        return bool(self.plans or self.customers)


def to_plain(node: Node | None) -> object:
    """A parsed YAML node as plain JSON-able data (dates and instants as ISO 8601 text)."""
    if node is None:
        return None
    if isinstance(node, YMap):
        return {entry.key: to_plain(entry.value) for entry in node}
    if isinstance(node, YSeq):
        return [to_plain(item) for item in node.items]
    value = node.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _node(doc: Doc, path: str, issues: Issues) -> Node | None:
    return load_yaml(json.dumps(doc), source=f"{SOURCE} {path}", issues=issues)


def _merged(
    base: Node | None, changes: Mapping[str, Doc | None], section: str, issues: Issues
) -> Node | None:
    if not changes:
        return base
    entries: dict[str, Entry] = dict(base.entries) if isinstance(base, YMap) else {}
    for key, doc in changes.items():
        if doc is None:
            entries.pop(key, None)
            continue
        node = _node(doc, f"{section}.{key}", issues)
        entries[key] = Entry(key, 0, node if node is not None else Scalar(None, "", True, 0))
    return YMap(frozen_map(entries), base.line if isinstance(base, YMap) else 0)


def compose_policy(root: YMap, changes: Changes) -> Policy:
    """The policy of `root` with `changes` applied. Raises ConfigError listing every issue."""
    issues = Issues(SOURCE)
    entries = dict(root.entries)
    for section, section_changes in (("plans", changes.plans), ("customers", changes.customers)):
        merged = _merged(root.get(section), section_changes, section, issues)
        if merged is not None:
            line = entries[section].key_line if section in entries else 0
            entries[section] = Entry(section, line, merged)
    policy = parse_policy(YMap(frozen_map(entries), root.line), issues)
    issues.raise_if_any()
    return policy


def issues_under(error: ConfigError, prefix: str) -> list[ConfigIssue]:
    """The issues of `error` about `prefix` (e.g. `customers.acme`), paths made relative to it."""
    found = []
    for issue in error.issues:
        if issue.path == prefix or issue.path.startswith((prefix + ".", prefix + "[")):
            rest = issue.path[len(prefix) :].lstrip(".")
            found.append(ConfigIssue(rest or "body", None, issue.message))
    return found
