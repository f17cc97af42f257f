"""Config errors: every problem found is one `ConfigIssue`; a failed load raises `ConfigError`.

The parser never stops at the first problem: it records issues in an `Issues` collector and
raises one `ConfigError` carrying all of them at the end.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigIssue", "Issues", "did_you_mean"]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem: where (`path`, 1-based `line`) and why (`message`).

    `path` is a YAML path (`plans.pro.entitlements.chat_requests.limit`,
    `routes[0].meters[1].feature`) or an environment variable name. `source` is the file (or
    `environment`) the issue was found in; it is optional so callers outside the loader (the
    admin API) can build issues without one.
    """

    path: str
    line: int | None
    message: str
    source: str | None = None

    def __str__(self) -> str:
        where = "" if self.source is None else self.source
        if self.line is not None:
            where = f"{where}:{self.line}"
        head = f"{where}: " if where else ""
        return f"{head}{self.path}: {self.message}" if self.path else f"{head}{self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; `issues` lists every problem found, in file order."""

    def __init__(self, issues: Iterable[ConfigIssue], source: str = "<string>") -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        self.source = source
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[tuple[ConfigIssue, ...], str]]:
        return (type(self), (self.issues, self.source))  # picklable across processes


class Issues:
    """Collects issues while a config is parsed (one per load; not shared)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._items: list[ConfigIssue] = []

    def add(self, path: str, line: int | None, message: str, *, source: str | None = None) -> None:
        self._items.append(ConfigIssue(path, line, message, source or self.source))

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def sorted(self) -> tuple[ConfigIssue, ...]:
        """File issues by line (stable), then issues without a line (environment)."""
        return tuple(sorted(self._items, key=lambda i: (i.line is None, i.line or 0)))

    def raise_if_any(self) -> None:
        """Raises ConfigError with every collected issue, if there is any."""
        if self._items:
            raise ConfigError(self.sorted(), source=self.source)


def did_you_mean(word: str, choices: Iterable[str], *, quote: str = "'") -> str:
    """`"; did you mean 'limit'?"` for the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {quote}{close[0]}{quote}?" if close else ""
