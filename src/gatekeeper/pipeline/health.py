"""Counters and health of the worker's loops (STYLE rule 7: a dead loop = not ready).

Plain mutable counters owned by one worker (no globals); a metrics exporter can read them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["LoopHealth", "WorkerHealth", "WorkerStats"]


@dataclass(slots=True)
class WorkerStats:
    read: int = 0  # entries delivered by XREADGROUP
    reclaimed: int = 0  # entries claimed from idle consumers by XAUTOCLAIM
    taken_over: int = 0  # entries claimed at once from consumers whose heartbeat is gone
    stored: int = 0  # events new to the billing store
    duplicates: int = 0  # events already stored (redelivery): nothing changed
    acked: int = 0
    dead_lettered: int = 0
    retried: int = 0  # failed entries left pending for a later try
    trimmed: int = 0  # entries removed by XTRIM MINID
    errors: Counter[str] = field(default_factory=Counter)  # by stable code, e.g. store_transient


@dataclass(slots=True)
class LoopHealth:
    name: str
    running: bool = False
    failed: str | None = None  # the exception that killed the loop
    last_error: str | None = None  # the last handled (retried) error
    errors: int = 0


@dataclass(slots=True)
class WorkerHealth:
    loops: dict[str, LoopHealth] = field(default_factory=dict)

    def loop(self, name: str) -> LoopHealth:
        return self.loops.setdefault(name, LoopHealth(name))

    @property
    def ready(self) -> bool:
        """True while every loop started runs; False once any died (or none started)."""
        return bool(self.loops) and all(h.running and h.failed is None for h in self.loops.values())
