"""Per-limit hit statistics of `ShouldRateLimit`, as envoyproxy/ratelimit keeps them.

Upstream (`src/stats/manager_impl.go`, `src/limiter/base_limiter.go`) keeps, per stats key
(`Match.stats_key`: `domain.key_value.key`), five counters in units of hits (`hits_addend`):

- `total_hits`: every hit of a limited descriptor (not `unlimited`, not replaced);
- `over_limit`: the hits past `requests_per_unit` (all of them once the window was over);
- `near_limit`: the hits past the near-limit threshold, `floor(limit × ratio)` computed in
  float32 as upstream does (`NEAR_LIMIT_RATIO`, default 0.8), up to the limit itself;
- `within_limit`: every hit of a request that left the descriptor within its limit;
- `shadow_mode`: the `over_limit` hits a `shadow_mode` limit answered OK anyway.

They overlap (total = within + over; near and shadow are parts of those), so they are five
counters, not one counter split by a label.

Memory stays bounded: series of the config's own descriptors (`register`) always exist; a
series whose name comes from request values (`detailed_metric`, `value_to_metric`, a limit
Envoy sends) is created only while the table holds fewer than `max_series`, and only for a key
of at most `max_key_chars`; past that, its hits go to its domain's `OVERFLOW` series and are
counted in `overflowed`. Single-threaded (asyncio): no locks; use it from the event loop only.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator

__all__ = [
    "DEFAULT_MAX_SERIES",
    "DEFAULT_NEAR_LIMIT_RATIO",
    "OVERFLOW",
    "LimitStats",
    "StatsTable",
    "near_limit_threshold",
]

DEFAULT_MAX_SERIES = 1_000
DEFAULT_NEAR_LIMIT_RATIO = 0.8  # upstream NEAR_LIMIT_RATIO
OVERFLOW = "__overflow__"  # the descriptor label of a domain's overflow series
_MAX_KEY_CHARS = 1_024
_F32 = struct.Struct("<f")


def _f32(value: float) -> float:
    """`value` rounded to the nearest float32 (Go's float32 conversion)."""
    return float(_F32.unpack(_F32.pack(value))[0])


def near_limit_threshold(requests_per_unit: int, ratio: float) -> int:
    """Upstream's `uint64(math.Floor(float64(float32(limit) * ratio)))` with a float32 ratio.

    The product of two float32s is exact in a float64, so rounding it once to float32 is
    exactly Go's float32 multiplication.
    """
    return math.floor(_f32(_f32(float(requests_per_unit)) * _f32(ratio)))


class LimitStats:
    """The five counters of one stats key (hits, not requests). Only ever grow."""

    __slots__ = (
        "descriptor",
        "domain",
        "near_limit",
        "over_limit",
        "shadow_mode",
        "total_hits",
        "within_limit",
    )

    def __init__(self, domain: str, descriptor: str) -> None:
        self.domain = domain
        self.descriptor = descriptor  # the stats key after `domain.`
        self.total_hits = 0
        self.over_limit = 0
        self.near_limit = 0
        self.within_limit = 0
        self.shadow_mode = 0

    def record(self, *, hits: int, after: int, limit: int, near: int, shadow: bool) -> None:
        """Count `hits` that took the window's count to `after`, against `limit` and `near`."""
        before = after - hits
        self.total_hits += hits
        if after > limit:
            over = hits if before >= limit else after - limit
            self.over_limit += over
            if before < limit and limit > near:
                self.near_limit += limit - max(near, before)
            if shadow:
                self.shadow_mode += over
            return
        self.within_limit += hits
        if after > near:
            self.near_limit += hits if before >= near else after - near


class StatsTable:
    """Every `LimitStats` of a process, by stats key; kept across config reloads."""

    def __init__(
        self, *, max_series: int = DEFAULT_MAX_SERIES, max_key_chars: int = _MAX_KEY_CHARS
    ) -> None:
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        self.max_series = max_series
        self._max_key_chars = max_key_chars
        self._series: dict[str, LimitStats] = {}
        self._overflow: dict[str, LimitStats] = {}
        self.overflowed = 0  # lookups folded into an overflow series

    def __len__(self) -> int:
        return len(self._series)

    def register(self, keys: Iterable[tuple[str, str]]) -> None:
        """Create the series of a config's own `(domain, stats key)` pairs (never capped)."""
        for domain, key in keys:
            if key not in self._series:
                self._series[key] = LimitStats(domain, _descriptor(domain, key))

    def get(self, domain: str, key: str) -> LimitStats:
        """The series of `key` (in `domain`), or the domain's overflow series when full."""
        found = self._series.get(key)
        if found is not None:
            return found
        if len(self._series) < self.max_series and len(key) <= self._max_key_chars:
            found = self._series[key] = LimitStats(domain, _descriptor(domain, key))
            return found
        self.overflowed += 1
        overflow = self._overflow.get(domain)
        if overflow is None:
            overflow = self._overflow[domain] = LimitStats(domain, OVERFLOW)
        return overflow

    def series(self) -> Iterator[LimitStats]:
        """Every series, the overflow ones last."""
        yield from self._series.values()
        yield from self._overflow.values()


def _descriptor(domain: str, key: str) -> str:
    prefix = domain + "."
    return key[len(prefix) :] if key.startswith(prefix) else key
