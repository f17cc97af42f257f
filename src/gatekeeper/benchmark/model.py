"""What a bench run produces: figures (each beside its baseline), correctness checks, targets."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Check", "Comparison", "Figure", "Results", "Target", "percentiles_ms", "progress"]


def progress(step: str) -> None:
    """One line on stderr per step, so a long run shows where it is."""
    print(f"bench {time.strftime('%H:%M:%S')} {step}", file=sys.stderr, flush=True)


def percentiles_ms(samples_ns: Sequence[int]) -> tuple[float, float, float]:
    """(p50, p99, p99.9) in milliseconds of latency samples in nanoseconds (0s when empty)."""
    if not samples_ns:
        return 0.0, 0.0, 0.0
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return at(0.50), at(0.99), at(0.999)


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure. `ratio` = value / the baseline figure's value (same run).

    `added_*_ms` = this figure's latency minus the latency baseline's (Envoy alone at the same
    load), when there is one.
    """

    scenario: str
    name: str
    value: float
    unit: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    baseline: str | None = None
    ratio: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    added_p999_ms: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    """A limited customer driven past its limit at one load level; violations empty = pass.

    admitted: 200 answers counted by the bench; counter: the Redis counter (requests used, or
    nano-units spent); events: usage events in the partition stream for that customer/feature
    (their quantity sum, or their amount sum for spend).
    """

    scenario: str
    level: str
    customer: str
    kind: str  # "hard" | "spend"
    limit: int
    sent: int
    admitted: int
    denied: int
    other: int  # neither admitted nor the expected denial (errors, timeouts)
    counter: int
    events: int
    expected: int  # what the counter must equal: admitted units (hard) or their price (spend)
    violations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Comparison:
    """The same scripted requests through two transports: normalized answers must be equal."""

    name: str
    left: str
    right: str
    left_answers: tuple[str, ...]
    right_answers: tuple[str, ...]

    @property
    def equal(self) -> bool:
        return self.left_answers == self.right_answers


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    measured: float | None
    goal: str
    met: bool | None  # None = not measured in this run


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)  # a scenario's own (control-plane)

    def figure(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    def violations(self) -> list[str]:
        found = [
            f"{c.scenario} {c.level} {c.customer}: {v}" for c in self.checks for v in c.violations
        ]
        found += [
            f"answers differ: {c.name} ({c.left} vs {c.right})"
            for c in self.comparisons
            if not c.equal
        ]
        return found


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0
