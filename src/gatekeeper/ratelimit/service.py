"""`ShouldRateLimit` without a transport: descriptors in, per-descriptor statuses out.

Semantics checked against envoyproxy/ratelimit `src/service/ratelimit.go`,
`src/limiter/base_limiter.go`, `src/redis/fixed_cache_impl.go` and `src/utils/utilities.go`:

- Each descriptor is matched on its own (`Matcher`); an unknown domain or no match means
  no limit: status OK with no `current_limit`.
- Every limit named in any matched limit's `replaces` (unlimited ones included) is dropped from
  this request: its descriptor answers like one without a limit.
- `unlimited`: OK, `limit_remaining` = 2^32-1, no counter touched.
- Hits: a descriptor's own `hits_addend` when set (0 = look without counting), else the
  request's `hits_addend`, where 0 (unset) means 1.
- Every limited descriptor is counted, whether or not another one is over (upstream's default;
  denied requests count too). After counting: OVER_LIMIT when the count exceeds
  `requests_per_unit` (remaining 0), else OK with `requests_per_unit - count` remaining.
  `duration_until_reset` runs to the end of the epoch-aligned window.
- `shadow_mode`: the descriptor answers OK even when over (its status is flagged `shadowed`
  for stats); `global_shadow_mode` does the same for the overall code.
- Overall OVER_LIMIT when any descriptor without `quota_mode` is over, or when there are
  `quota_mode` descriptors and all of them are over.
- A limit Envoy sends with a descriptor (`LimitOverride`) is used instead of the tree's, if
  the domain is configured at all (upstream looks the domain up first).
- Statistics per stats key, in hits (`stats.LimitStats`): every limited descriptor counted
  (not unlimited, not replaced) adds to its series in `stats`. A config's own keys are looked
  up in one dict lookup (their names were built at load); only names made of request values
  (`detailed_metric`, `value_to_metric`, an Envoy-sent limit) build a string per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from gatekeeper.clock import Clock
from gatekeeper.ratelimit.matcher import Matcher
from gatekeeper.ratelimit.model import RateLimit, RateLimitConfig, Unit
from gatekeeper.ratelimit.stats import (
    DEFAULT_NEAR_LIMIT_RATIO,
    StatsTable,
    near_limit_threshold,
)

__all__ = [
    "UNLIMITED_REMAINING",
    "Code",
    "Counter",
    "CounterStore",
    "CurrentLimit",
    "DescriptorStatus",
    "LimitOverride",
    "RateLimitRequestError",
    "RateLimitResult",
    "RateLimitService",
]

UNLIMITED_REMAINING = 2**32 - 1  # upstream answers math.MaxUint32 for `unlimited`
_MAX_HITS = 2**53  # counts stay exact as Lua numbers


class Code(StrEnum):
    OK = "OK"
    OVER_LIMIT = "OVER_LIMIT"


class RateLimitRequestError(ValueError):
    """A request the service cannot answer (empty domain or descriptors, bad hits_addend)."""


@dataclass(frozen=True, slots=True)
class LimitOverride:
    """A limit Envoy sends with the descriptor (`RateLimitDescriptor.limit`): used instead of
    the descriptor tree's, with no shadow mode, in a configured domain."""

    requests_per_unit: int
    unit: Unit


@dataclass(frozen=True, slots=True)
class CurrentLimit:
    requests_per_unit: int
    unit: Unit
    name: str = ""


@dataclass(frozen=True, slots=True)
class DescriptorStatus:
    """One descriptor's answer. `duration_until_reset` is in seconds (None without a limit).

    `shadowed`: over the limit but answered OK because of `shadow_mode`. `stats_key` names the
    limit for metrics (see `Matcher`); None without a limit.
    """

    code: Code
    current_limit: CurrentLimit | None = None
    limit_remaining: int = 0
    duration_until_reset: int | None = None
    stats_key: str | None = None
    shadowed: bool = False


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    overall_code: Code
    statuses: tuple[DescriptorStatus, ...]


@dataclass(frozen=True, slots=True)
class Counter:
    """One fixed-window counter to add `hits` to: keyed by domain, entries and window start."""

    domain: str
    entries: tuple[tuple[str, str], ...]
    window_start: int  # epoch seconds
    window_seconds: int
    hits: int


class CounterStore(Protocol):
    async def hit(self, counters: Sequence[Counter]) -> list[int]:
        """Add each counter's hits; return each count after adding, in order.

        Raises the store's errors (redis.exceptions.RedisError, OSError) when it is down.
        """
        ...


@dataclass(frozen=True, slots=True)
class _Applied:
    limit: RateLimit
    entries: tuple[tuple[str, str], ...]
    stats_key: str
    near_limit: int


class RateLimitService:
    """Answers ShouldRateLimit from a loaded config, a counter store and a clock."""

    def __init__(
        self,
        config: RateLimitConfig,
        store: CounterStore,
        clock: Clock,
        *,
        global_shadow_mode: bool = False,
        stats: StatsTable | None = None,
        near_limit_ratio: float = DEFAULT_NEAR_LIMIT_RATIO,
    ) -> None:
        """`stats`: where per-limit statistics go (a new table by default); it outlives
        config reloads. `near_limit_ratio`: upstream's NEAR_LIMIT_RATIO."""
        self._store = store
        self._clock = clock
        self._global_shadow_mode = global_shadow_mode
        self.near_limit_ratio = near_limit_ratio
        self.stats = stats if stats is not None else StatsTable()
        self.counts: dict[str, int] = {}  # answered requests by overall code (for metrics)
        self.store_errors = 0  # requests the counter store failed to count
        self._matcher = self.compile(config)
        self.stats.register(self._matcher.stats_keys())

    @property
    def config(self) -> RateLimitConfig:
        return self._matcher.config

    def compile(self, config: RateLimitConfig) -> Matcher:
        """The index of `config` for this service; touches nothing shared, so a reload may
        build it off the event loop (`asyncio.to_thread`) and `install` it after."""
        return Matcher(config, near_limit_ratio=self.near_limit_ratio)

    def install(self, matcher: Matcher) -> None:
        """Swap in a compiled config (one reference assignment); requests already running
        keep the old one. Counters whose Redis key is unchanged keep counting (a limit's key
        is its domain, entries and window, never its threshold); statistics series of the
        same name keep their counts. Event loop only."""
        self.stats.register(matcher.stats_keys())
        self._matcher = matcher

    def replace_config(self, config: RateLimitConfig) -> None:
        """`install(compile(config))`, on the event loop."""
        self.install(self.compile(config))

    async def should_rate_limit(
        self,
        domain: str,
        descriptors: Sequence[Sequence[tuple[str, str]]],
        hits_addend: int = 0,
        per_descriptor_hits: Sequence[int | None] | None = None,
        *,
        overrides: Sequence[LimitOverride | None] | None = None,
    ) -> RateLimitResult:
        """Count the request against every matching limit and answer per descriptor.

        One store call per request (see `RedisCounterStore` for Cluster). Raises
        RateLimitRequestError for a malformed request and the store's errors when it is down.
        """
        hits = self._hits(domain, descriptors, hits_addend, per_descriptor_hits, overrides)
        matcher = self._matcher
        applied: list[_Applied | None] = []
        unlimited: list[bool] = []
        replaced: set[str] = set()  # never "": the parser rejects empty `replaces` names
        for index, entries in enumerate(descriptors):
            one = self._lookup(matcher, domain, tuple(entries), overrides, index)
            if one is not None:
                replaced.update(one.limit.replaces)
            unlimited.append(one is not None and one.limit.unlimited)
            applied.append(None if one is None or one.limit.unlimited else one)
        applied = [None if a is not None and a.limit.name in replaced else a for a in applied]

        now = int(self._clock.now().timestamp())
        counters: list[Counter] = []
        for index, one in enumerate(applied):
            if one is not None:
                counters.append(_counter(domain, one, now, hits[index]))
        try:
            counts = iter(await self._store.hit(counters)) if counters else iter(())
        except Exception:
            self.store_errors += 1
            raise

        statuses: list[DescriptorStatus] = []
        for index, one in enumerate(applied):
            if one is None:
                remaining = UNLIMITED_REMAINING if unlimited[index] else 0
                statuses.append(DescriptorStatus(Code.OK, limit_remaining=remaining))
            else:
                count = next(counts)
                limit = one.limit
                self.stats.get(domain, one.stats_key).record(
                    hits=hits[index],
                    after=count,
                    limit=limit.requests_per_unit,
                    near=one.near_limit,
                    shadow=limit.shadow_mode,
                )
                statuses.append(_status(one, count, now))
        overall = self._overall(applied, statuses)
        self.counts[overall.value] = self.counts.get(overall.value, 0) + 1
        return RateLimitResult(overall, tuple(statuses))

    def _overall(
        self, applied: Sequence[_Applied | None], statuses: Sequence[DescriptorStatus]
    ) -> Code:
        over_rate, quota_total, quota_over = False, 0, 0
        for one, status in zip(applied, statuses, strict=True):
            if one is None:
                continue
            over = status.code is Code.OVER_LIMIT
            if one.limit.quota_mode:
                quota_total += 1
                quota_over += over
            else:
                over_rate = over_rate or over
        over_all = over_rate or (quota_total > 0 and quota_total == quota_over)
        return Code.OVER_LIMIT if over_all and not self._global_shadow_mode else Code.OK

    @staticmethod
    def _lookup(
        matcher: Matcher,
        domain: str,
        entries: tuple[tuple[str, str], ...],
        overrides: Sequence[LimitOverride | None] | None,
        index: int,
    ) -> _Applied | None:
        override = overrides[index] if overrides is not None else None
        if override is not None and matcher.has_domain(domain):
            # Upstream: an Envoy-sent limit bypasses the descriptor tree (and its shadow mode),
            # but only within a configured domain.
            limit = RateLimit(override.requests_per_unit, override.unit)
            key = ".".join([domain, *(f"{k}_{v}" if v else k for k, v in entries)])
            near = near_limit_threshold(limit.requests_per_unit, matcher.near_limit_ratio)
            return _Applied(limit, entries, key, near)
        match = matcher.match(domain, entries)
        if match is None:
            return None
        return _Applied(match.limit, match.counter_entries, match.stats_key, match.near_limit)

    @staticmethod
    def _hits(
        domain: str,
        descriptors: Sequence[Sequence[tuple[str, str]]],
        hits_addend: int,
        per_descriptor: Sequence[int | None] | None,
        overrides: Sequence[LimitOverride | None] | None,
    ) -> list[int]:
        if not domain:
            raise RateLimitRequestError("rate limit domain must not be empty")
        if not descriptors:
            raise RateLimitRequestError("rate limit descriptor list must not be empty")
        for name, given in (("per_descriptor_hits", per_descriptor), ("overrides", overrides)):
            if given is not None and len(given) != len(descriptors):
                raise RateLimitRequestError(f"{name} must have one item per descriptor")
        if not 0 <= hits_addend < _MAX_HITS:
            raise RateLimitRequestError(f"hits_addend must be from 0 to {_MAX_HITS - 1}")
        default = max(1, hits_addend)
        hits = [default if h is None else h for h in (per_descriptor or [None] * len(descriptors))]
        if any(not 0 <= h < _MAX_HITS for h in hits):
            raise RateLimitRequestError(f"a descriptor's hits_addend must be below {_MAX_HITS}")
        return hits


def _counter(domain: str, one: _Applied, now: int, hits: int) -> Counter:
    assert one.limit.unit is not None  # only unlimited limits have no unit
    seconds = one.limit.unit.seconds
    return Counter(domain, one.entries, now - now % seconds, seconds, hits)


def _status(one: _Applied, count: int, now: int) -> DescriptorStatus:
    limit = one.limit
    assert limit.unit is not None
    seconds = limit.unit.seconds
    current = CurrentLimit(limit.requests_per_unit, limit.unit, limit.name)
    over = count > limit.requests_per_unit
    remaining = 0 if over else limit.requests_per_unit - count
    return DescriptorStatus(
        code=Code.OVER_LIMIT if over and not limit.shadow_mode else Code.OK,
        current_limit=current,
        limit_remaining=remaining,
        duration_until_reset=seconds - now % seconds,
        stats_key=one.stats_key,
        shadowed=over and limit.shadow_mode,
    )
