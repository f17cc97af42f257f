"""Typed reads of YAML values that record an issue (path, line, reason) instead of raising.

`Section` wraps one YAML mapping: it reports unknown keys (with a did-you-mean hint) and
missing required keys on construction, then each typed getter returns the value, or the
given default when the key is absent or invalid (the issue is recorded and the key marked
bad, so later cross-checks can skip it). Nothing here raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from enum import StrEnum
from typing import TypeVar

from gatekeeper.config.errors import Issues, did_you_mean
from gatekeeper.config.yamlsrc import Node, Scalar, YMap, YSeq, key_path
from gatekeeper.model import MAX_COUNT
from gatekeeper.money import MAX_SCRIPT_NANO, MoneyError, format_nano, parse_nano

__all__ = [
    "Section",
    "describe",
    "expect_enum",
    "expect_header",
    "expect_int",
    "expect_map",
    "expect_money",
    "expect_seq",
    "expect_str",
    "int_range",
    "scalar_text",
    "section_map",
    "section_seq",
]

T = TypeVar("T")
V = TypeVar("V")
E = TypeVar("E", bound=StrEnum)


def describe(node: Node) -> str:
    """How a value reads in an error message: `'abc'`, `1.5`, `null`, `a list`."""
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    if isinstance(node.value, str):
        return f"'{node.value}'"
    if node.value is None:
        return "null"
    return node.raw


def scalar_text(node: Node) -> str | None:
    """A scalar's text as written (plain) or decoded (quoted); None for null or collections."""
    if not isinstance(node, Scalar) or node.value is None:
        return None
    return node.raw if node.plain else str(node.value)


def int_range(lo: int | None, hi: int | None) -> str:
    """`an integer 1..65535`, `a positive integer`, `an integer >= 0`, `an integer`."""
    if lo is not None and hi is not None:
        return f"an integer {lo}..{hi}"
    if lo == 1:
        return "a positive integer"
    if lo is not None:
        return f"an integer >= {lo}"
    return "an integer"


MAX_EXACT = MAX_COUNT  # the largest integer a policy may hold (model.MAX_COUNT)
MAX_ALERT_POINTS = 20  # absolute alert points per limit (alert_at)


def expect_int(
    node: Node, path: str, issues: Issues, *, lo: int | None = None, hi: int | None = None
) -> int | None:
    """An integer within lo..hi, and never above MAX_EXACT."""
    value = node.value if isinstance(node, Scalar) else None
    if isinstance(value, bool) or not isinstance(value, int) or not _within(value, lo, hi):
        issues.add(path, node.line, f"expected {int_range(lo, hi)}, got {describe(node)}")
        return None
    if value > MAX_EXACT:
        issues.add(
            path,
            node.line,
            f"at most {MAX_EXACT} (2**53 - 1: counts are exact only up to there), "
            f"got {describe(node)}",
        )
        return None
    return value


def _within(value: int, lo: int | None, hi: int | None) -> bool:
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def expect_str(
    node: Node, path: str, issues: Issues, *, pattern: re.Pattern[str] | None = None, what: str = ""
) -> str | None:
    """A string; plain numbers are taken as their source text (ids such as `12345`)."""
    text: str | None = None
    if isinstance(node, Scalar):
        if isinstance(node.value, str):
            text = node.value
        elif isinstance(node.value, int | float) and not isinstance(node.value, bool):
            text = node.raw
    if text is None:
        issues.add(path, node.line, f"expected {what or 'a string'}, got {describe(node)}")
        return None
    if pattern is not None and not pattern.fullmatch(text):
        issues.add(path, node.line, f"expected {what or 'a string'}, got '{text}'")
        return None
    return text


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")


def expect_header(node: Node, path: str, issues: Issues) -> str | None:
    """An HTTP header name, lower-cased (HTTP/2 and Envoy use lower case)."""
    text = expect_str(node, path, issues, what="a header name")
    if text is None:
        return None
    name = text.strip().lower()
    if not _TOKEN.fullmatch(name):
        issues.add(path, node.line, f"'{text}' is not a valid header name")
        return None
    return name


def expect_enum(node: Node, path: str, issues: Issues, enum: type[E]) -> E | None:
    choices = [member.value for member in enum]
    text = scalar_text(node)
    if text in choices:
        return enum(text)
    hint = did_you_mean(text, choices) if text else ""
    issues.add(path, node.line, f"expected one of {', '.join(choices)}, got {describe(node)}{hint}")
    return None


def expect_money(node: Node, path: str, issues: Issues) -> int | None:
    """Nano-units from a decimal string or an unquoted number (read from its source text)."""
    text = scalar_text(node)
    if text is None or (isinstance(node, Scalar) and isinstance(node.value, bool)):
        issues.add(
            path, node.line, f'expected a decimal amount such as "0.002", got {describe(node)}'
        )
        return None
    try:
        nano = parse_nano(text)
    except MoneyError as exc:
        issues.add(path, node.line, f"invalid amount: {exc}")
        return None
    if nano < 0:
        issues.add(path, node.line, f"amount must not be negative, got {text}")
        return None
    if nano >= MAX_SCRIPT_NANO:
        issues.add(
            path,
            node.line,
            f"{text} is at or above the largest amount the decision script holds exactly "
            f"({format_nano(MAX_SCRIPT_NANO)}, MAX_SCRIPT_NANO = 2**53 nano-units)",
        )
        return None
    return nano


def expect_map(node: Node, path: str, issues: Issues, *, what: str = "a mapping") -> YMap | None:
    if isinstance(node, YMap):
        return node
    issues.add(path, node.line, f"expected {what}, got {describe(node)}")
    return None


def expect_seq(node: Node, path: str, issues: Issues, *, what: str = "a list") -> YSeq | None:
    if isinstance(node, YSeq):
        return node
    issues.add(path, node.line, f"expected {what}, got {describe(node)}")
    return None


def _null(node: Node | None) -> bool:
    return node is None or (isinstance(node, Scalar) and node.value is None)


def section_map(node: Node | None, path: str, issues: Issues) -> YMap | None:
    """A mapping where absent or `null` means empty (None)."""
    return None if _null(node) else expect_map(node, path, issues)  # type: ignore[arg-type]


def section_seq(node: Node | None, path: str, issues: Issues) -> YSeq | None:
    """A list where absent or `null` means empty (None)."""
    return None if _null(node) else expect_seq(node, path, issues)  # type: ignore[arg-type]


class Section:
    """One YAML mapping being read; see the module docstring."""

    def __init__(
        self,
        node: YMap,
        path: str,
        issues: Issues,
        *,
        allowed: Collection[str],
        required: Collection[str] = (),
    ) -> None:
        self.node = node
        self.path = path
        self.issues = issues
        self.bad: set[str] = set()
        for entry in node:
            if entry.key not in allowed:
                hint = did_you_mean(entry.key, allowed)
                issues.add(
                    key_path(path, entry.key), entry.key_line, f"unknown key '{entry.key}'{hint}"
                )
        for key in required:
            if key not in node:
                issues.add(path, node.line, f"missing required key '{key}'")
                self.bad.add(key)

    def has(self, key: str) -> bool:
        return key in self.node

    def ok(self, key: str) -> bool:
        """Present and valid."""
        return key in self.node and key not in self.bad

    def get(self, key: str) -> Node | None:
        return self.node.get(key)

    def path_of(self, key: str) -> str:
        return key_path(self.path, key)

    def line_of(self, key: str) -> int:
        node = self.node.get(key)
        return self.node.line if node is None else node.line

    def error(self, key: str, message: str) -> None:
        """Record an issue about `key` (its path and line) and mark it bad."""
        self.bad.add(key)
        self.issues.add(self.path_of(key), self.line_of(key), message)

    def is_null(self, key: str) -> bool:
        node = self.node.get(key)
        return isinstance(node, Scalar) and node.value is None

    def _checked(self, key: str, value: V | None, default: T) -> V | T:
        if value is None:
            self.bad.add(key)
            return default
        return value

    def integer(
        self, key: str, default: T, *, lo: int | None = None, hi: int | None = None
    ) -> int | T:
        node = self.node.get(key)
        if node is None:
            return default
        return self._checked(
            key, expect_int(node, self.path_of(key), self.issues, lo=lo, hi=hi), default
        )

    def integer_or_null(self, key: str, default: T, *, lo: int | None = None) -> int | T | None:
        """An integer, or None for an explicit `null`."""
        if self.is_null(key):
            return None
        return self.integer(key, default, lo=lo)

    def text(
        self, key: str, default: T, *, pattern: re.Pattern[str] | None = None, what: str = ""
    ) -> str | T:
        node = self.node.get(key)
        if node is None:
            return default
        found = expect_str(node, self.path_of(key), self.issues, pattern=pattern, what=what)
        return self._checked(key, found, default)

    def flag(self, key: str, default: bool) -> bool:
        node = self.node.get(key)
        if node is None:
            return default
        if isinstance(node, Scalar) and isinstance(node.value, bool):
            return node.value
        self.error(key, f"expected true or false, got {describe(node)}")
        return default

    def choice(self, key: str, enum: type[E], default: T) -> E | T:
        node = self.node.get(key)
        if node is None:
            return default
        return self._checked(key, expect_enum(node, self.path_of(key), self.issues, enum), default)

    def header(self, key: str, default: T) -> str | T:
        node = self.node.get(key)
        if node is None:
            return default
        return self._checked(key, expect_header(node, self.path_of(key), self.issues), default)

    def money(self, key: str) -> int | None:
        node = self.node.get(key)
        if node is None or self.is_null(key):
            return None
        return self._checked(key, expect_money(node, self.path_of(key), self.issues), None)

    def thresholds(self, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        """Alert thresholds: percentages 1..1000, strictly ascending."""
        return self._ascending(
            key, default, "a list of percentages",
            lambda item, path: expect_int(item, path, self.issues, lo=1, hi=1000),
        )  # fmt: skip

    def alert_at(self, key: str, default: tuple[int, ...], *, money: bool) -> tuple[int, ...]:
        """Absolute alert points, strictly ascending, at most MAX_ALERT_POINTS: unit counts
        (>= 1), or with `money` amounts above zero (nano-units)."""

        def point(item: Node, path: str) -> int | None:
            if not money:
                return expect_int(item, path, self.issues, lo=1)
            nano = expect_money(item, path, self.issues)
            if nano == 0:
                self.issues.add(path, item.line, "an amount to alert at must be above zero")
                return None
            return nano

        what = "a list of amounts" if money else "a list of unit counts"
        values = self._ascending(key, default, what, point)
        if len(values) > MAX_ALERT_POINTS and key not in self.bad:
            self.error(key, f"at most {MAX_ALERT_POINTS} values, got {len(values)}")
        return values

    def _ascending(
        self,
        key: str,
        default: tuple[int, ...],
        what: str,
        parse: Callable[[Node, str], int | None],
    ) -> tuple[int, ...]:
        node = self.node.get(key)
        if node is None:
            return default
        seq = expect_seq(node, self.path_of(key), self.issues, what=what)
        if seq is None:
            self.bad.add(key)
            return default
        values: list[int] = []
        for index, item in enumerate(seq.items):
            path = f"{self.path_of(key)}[{index}]"
            value = parse(item, path)
            if value is None:
                self.bad.add(key)
            elif values and value <= values[-1]:
                self.issues.add(
                    path,
                    item.line,
                    f"thresholds must be strictly ascending: {value} after {values[-1]}",
                )
                self.bad.add(key)
            else:
                values.append(value)
        return tuple(values)
