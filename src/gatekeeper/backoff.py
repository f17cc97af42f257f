"""The one backoff: how long to wait before the next attempt after `attempt` failures in a row.

Every retrying loop uses it (Redis reconnects of the auto-pipeline, stream consumers, the
dashboard's stream watch, webhook and ingest retries, the OTLP exporter), so a reader finds
one formula: the ceiling of attempt n (1-based) is min(cap, base * 2**(n-1)); `jitter` picks
the wait under it — FULL uniform(0, ceiling) (AWS's "full jitter": retries of many clients
spread out; for deliveries to other people's servers), EQUAL uniform(ceiling/2, ceiling) (a
reconnect: never much sooner than planned), NONE the ceiling itself (one loop, one resource).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

__all__ = ["Backoff", "Jitter"]

_MAX_DOUBLINGS = 60  # 2**60 * any sane base is past every cap: no float overflow


class Jitter(Enum):
    FULL = "full"
    EQUAL = "equal"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Backoff:
    """`base_s` after the first failure, doubling up to `cap_s`. Raises ValueError for a
    negative base or a cap below it."""

    base_s: float
    cap_s: float
    jitter: Jitter = Jitter.NONE

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < self.base_s:
            raise ValueError("backoff needs 0 <= base_s <= cap_s")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after `attempt` (>= 1) failures in a row."""
        doublings = min(max(attempt, 1) - 1, _MAX_DOUBLINGS)
        return min(self.cap_s, self.base_s * float(2**doublings))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after `attempt` (>= 1) failures in a row; `rand` in [0, 1)."""
        top = self.ceiling(attempt)
        if self.jitter is Jitter.FULL:
            return top * rand()
        if self.jitter is Jitter.EQUAL:
            return top * (0.5 + rand() / 2)
        return top
