"""Find the limit for one request descriptor, walking the domain's tree as upstream does.

Checked against envoyproxy/ratelimit `src/config/config_impl.go` (`GetLimit`):

- At each level, for entry (key, value): the descriptor with that exact key and value wins;
  else the first wildcard descriptor of that key (in file order) whose value pattern matches
  (`*` matches any run of characters, anywhere in the pattern); else the key-only descriptor.
  There is no backtracking: once a level matched, deeper levels are searched only under it.
- A limit applies only if it sits on the node matched by the request's *last* entry: a
  request with more entries than the tree is deep, or fewer, gets no limit.
- The counter belongs to the request's own entries, so each value matched by a key-only or
  wildcard descriptor counts separately, except entries matched by a `share_threshold`
  wildcard, which count under the pattern (all matching values share one counter).
- `stats_key` is the name upstream gives the limit's stats: the config path
  (`domain.key_value.key`), or with `detailed_metric` the request's entries
  (`domain.key_value.key_value`); `value_to_metric` puts runtime values into the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gatekeeper.ratelimit.model import DescriptorConfig, RateLimit, RateLimitConfig

__all__ = ["Match", "Matcher", "wildcard_match"]


@dataclass(frozen=True, slots=True)
class Match:
    """The limit for a descriptor, the entries its counter is keyed by, and its stats name."""

    limit: RateLimit
    counter_entries: tuple[tuple[str, str], ...]
    stats_key: str


def wildcard_match(pattern: str, value: str) -> bool:
    """True when `value` matches `pattern`, where each `*` matches zero or more characters."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == value
    head, tail = parts[0], parts[-1]
    if len(value) < sum(map(len, parts)) or not value.startswith(head):
        return False
    if not value.endswith(tail):
        return False
    rest = value[len(head) : len(value) - len(tail)]
    for part in parts[1:-1]:
        found = rest.find(part)
        if found < 0:
            return False
        rest = rest[found + len(part) :]
    return True


@dataclass(slots=True)
class _Level:
    exact: dict[tuple[str, str], _Node] = field(default_factory=dict)
    wildcards: list[_Node] = field(default_factory=list)
    default: dict[str, _Node] = field(default_factory=dict)

    def find(self, key: str, value: str) -> tuple[_Node | None, str]:
        """The matching node and how it matched: `exact`, `wildcard` or `default`."""
        node = self.exact.get((key, value)) if value else None
        if node is not None:
            return node, "exact"
        for candidate in self.wildcards:
            if candidate.config.key == key and wildcard_match(candidate.config.value, value):
                return candidate, "wildcard"
        return self.default.get(key), "default"


@dataclass(slots=True)
class _Node:
    config: DescriptorConfig
    children: _Level


def _index(descriptors: Sequence[DescriptorConfig]) -> _Level:
    level = _Level()
    for d in descriptors:
        node = _Node(d, _index(d.descriptors))
        if not d.value:
            level.default[d.key] = node
            continue
        level.exact[(d.key, d.value)] = node  # a literal `foo*` value still matches exactly
        if d.is_wildcard:
            level.wildcards.append(node)
    return level


class Matcher:
    """An index of a `RateLimitConfig` for lookups. Immutable after construction."""

    def __init__(self, config: RateLimitConfig) -> None:
        self._domains = {d.domain: _index(d.descriptors) for d in config.domains}

    def has_domain(self, domain: str) -> bool:
        return domain in self._domains

    def match(self, domain: str, entries: Sequence[tuple[str, str]]) -> Match | None:
        """The limit for a descriptor's `(key, value)` entries, or None when none applies."""
        level = self._domains.get(domain)
        if level is None or not entries:
            return None
        metric_path: list[str] = []
        detailed_path: list[str] = []
        counter: list[tuple[str, str]] = []
        found: RateLimit | None = None
        for index, (key, value) in enumerate(entries):
            node, how = level.find(key, value)
            if node is None:
                return None
            d = node.config
            shared = how == "wildcard" and d.share_threshold
            counter.append((key, d.value if shared else value))
            detailed_path.append(_metric_part(key, d.value if shared else value))
            metric_path.append(_metric_part(key, _metric_value(d, how, value)))
            if d.rate_limit is not None and index == len(entries) - 1:
                found = d.rate_limit
            if not d.descriptors:
                break
            level = node.children
        if found is None:
            return None
        path = detailed_path if found.detailed_metric else metric_path
        return Match(found, tuple(counter), ".".join([domain, *path]))


def _metric_part(key: str, value: str) -> str:
    return f"{key}_{value}" if value else key


def _metric_value(d: DescriptorConfig, how: str, value: str) -> str:
    if how == "exact":
        return value
    if how == "wildcard":
        return d.value if d.share_threshold or not d.value_to_metric else value
    return value if d.value_to_metric else ""
