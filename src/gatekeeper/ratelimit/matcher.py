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
  The config path is built once per descriptor when the index is built, so a request whose
  name comes from the config alone builds no string (`Match.static_key` is then True).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gatekeeper.ratelimit.model import DescriptorConfig, RateLimit, RateLimitConfig
from gatekeeper.ratelimit.stats import DEFAULT_NEAR_LIMIT_RATIO, near_limit_threshold

__all__ = ["Match", "Matcher", "wildcard_match"]


@dataclass(frozen=True, slots=True)
class Match:
    """The limit for a descriptor, the entries its counter is keyed by, and its stats name.

    `near_limit`: the near-limit threshold of the limit (see `stats.near_limit_threshold`).
    `static_key`: `stats_key` is one of the config's own (`Matcher.stats_keys`), not made
    from request values.
    """

    limit: RateLimit
    counter_entries: tuple[tuple[str, str], ...]
    stats_key: str
    near_limit: int = 0
    static_key: bool = True


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
    stats_key: str  # the config path: `domain.key_value.key`
    near_limit: int  # of `config.rate_limit` (0 without one)


def _index(
    descriptors: Sequence[DescriptorConfig],
    parent: str,
    ratio: float,
    keys: list[str],
    static: bool = True,
) -> _Level:
    """The level of `descriptors` under the stats key `parent`. Appends to `keys` the stats
    key of every limited node a request can be counted under by that key: not with
    `detailed_metric`, nor under a key-only or wildcard `value_to_metric` descriptor (whose
    names always carry request values); `static` is False below one of those."""
    level = _Level()
    for d in descriptors:
        key = f"{parent}.{_metric_part(d.key, d.value)}"
        here = static and not (d.value_to_metric and (not d.value or d.is_wildcard))
        limit = d.rate_limit
        near = 0
        if limit is not None and not limit.unlimited:
            near = near_limit_threshold(limit.requests_per_unit, ratio)
            if here and not limit.detailed_metric:
                keys.append(key)
        node = _Node(d, _index(d.descriptors, key, ratio, keys, here), key, near)
        if not d.value:
            level.default[d.key] = node
            continue
        level.exact[(d.key, d.value)] = node  # a literal `foo*` value still matches exactly
        if d.is_wildcard:
            level.wildcards.append(node)
    return level


class Matcher:
    """An index of a `RateLimitConfig` for lookups. Immutable after construction, and safe to
    build off the event loop (it touches nothing shared).

    `near_limit_ratio` is upstream's NEAR_LIMIT_RATIO (see `stats.near_limit_threshold`).
    """

    def __init__(
        self, config: RateLimitConfig, *, near_limit_ratio: float = DEFAULT_NEAR_LIMIT_RATIO
    ) -> None:
        self.config = config
        self.near_limit_ratio = near_limit_ratio
        self._keys: list[tuple[str, str]] = []
        self._domains: dict[str, _Level] = {}
        for d in config.domains:
            keys: list[str] = []
            self._domains[d.domain] = _index(d.descriptors, d.domain, near_limit_ratio, keys)
            self._keys.extend((d.domain, key) for key in keys)

    def stats_keys(self) -> list[tuple[str, str]]:
        """`(domain, stats key)` of every limited descriptor of the config, in file order."""
        return list(self._keys)

    def has_domain(self, domain: str) -> bool:
        return domain in self._domains

    def match(self, domain: str, entries: Sequence[tuple[str, str]]) -> Match | None:
        """The limit for a descriptor's `(key, value)` entries, or None when none applies."""
        level = self._domains.get(domain)
        if level is None or not entries:
            return None
        counter: list[tuple[str, str]] = []
        parent = domain  # the stats key of the level above
        dynamic: list[str] | None = None  # from the first value_to_metric level on
        found: _Node | None = None
        last = len(entries) - 1
        for index, (key, value) in enumerate(entries):
            node, how = level.find(key, value)
            if node is None:
                return None
            d = node.config
            shared = how == "wildcard" and d.share_threshold
            counter.append((key, d.value if shared else value))
            if dynamic is None and d.value_to_metric and how != "exact" and not shared:
                dynamic = [parent]
            if dynamic is not None:
                dynamic.append(_metric_part(key, _metric_value(d, how, value)))
            if d.rate_limit is not None and index == last:
                found = node
            if not d.descriptors:
                break
            level = node.children
            parent = node.stats_key
        if found is None:
            return None
        limit = found.config.rate_limit
        assert limit is not None
        matched = tuple(counter)
        if limit.detailed_metric:
            key = ".".join([domain, *(_metric_part(k, v) for k, v in matched)])
            return Match(limit, matched, key, found.near_limit, static_key=False)
        if dynamic is not None:
            return Match(limit, matched, ".".join(dynamic), found.near_limit, static_key=False)
        return Match(limit, matched, found.stats_key, found.near_limit)


def _metric_part(key: str, value: str) -> str:
    return f"{key}_{value}" if value else key


def _metric_value(d: DescriptorConfig, how: str, value: str) -> str:
    if how == "exact":
        return value
    if how == "wildcard":
        return d.value if d.share_threshold or not d.value_to_metric else value
    return value if d.value_to_metric else ""
