"""Prometheus metrics without a dependency: a registry, its instruments, the text format.

No global registry: whoever composes the process (the App) owns one and hands out what each
part needs. Two kinds of metric:

- instruments the code updates: `Counter.inc`, `Gauge.set`, `Histogram.observe` (a bisect and
  two additions), optionally per label values via `.labels(...)`;
- readings: a callable the registry calls at scrape time, for counts a part already keeps
  (nothing is added to the hot path). It returns one number, or a mapping from label values
  (in `labelnames` order) to numbers.

`render()` writes the text exposition format 0.0.4 (`CONTENT_TYPE`): `# HELP`, `# TYPE`, then
the samples; counters are named `*_total`; a histogram has cumulative `_bucket{le=...}` series
ending at `+Inf`, then `_sum` and `_count`. Single-threaded (asyncio): no locks.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricFamily",
    "MetricType",
    "Registry",
    "Sample",
    "render",
]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelValues = tuple[str, ...]
Reading = float | Mapping[LabelValues, float]
Read = Callable[[], Reading]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of the exposition: `name{labels} value`."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """A metric as scraped: its name, help, type and every sample."""

    name: str
    help: str
    type: MetricType
    samples: tuple[Sample, ...]


class _Value:
    """One series of a counter or gauge."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class _Metric:
    type: MetricType

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        if self.type is MetricType.COUNTER and not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        for label in labelnames:
            if not _LABEL.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} on {name}")
            if label == "le" and self.type is MetricType.HISTOGRAM:
                raise ValueError(f"histogram {name} may not have a label 'le'")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"repeated label name on {name}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)

    def _key(self, values: Sequence[str]) -> LabelValues:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(values)}")
        return tuple(str(v) for v in values)

    def _labels(self, values: LabelValues) -> tuple[tuple[str, str], ...]:
        return tuple(zip(self.labelnames, values, strict=True))

    def samples(self) -> Iterable[Sample]:
        raise NotImplementedError

    def collect(self) -> MetricFamily:
        return MetricFamily(self.name, self.help, self.type, tuple(self.samples()))


class _Scalar(_Metric):
    """Counter and gauge: one number per label values."""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._series: dict[LabelValues, _Value] = {}
        if not self.labelnames:
            self._series[()] = _Value()

    def _child(self, values: Sequence[str]) -> _Value:
        key = self._key(values)
        child = self._series.get(key)
        if child is None:
            child = self._series[key] = _Value()
        return child

    def samples(self) -> Iterable[Sample]:
        for key, child in self._series.items():
            yield Sample(self.name, self._labels(key), child.value)


class CounterChild:
    __slots__ = ("_value",)

    def __init__(self, value: _Value) -> None:
        self._value = value

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._value.value += amount


class Counter(_Scalar):
    type = MetricType.COUNTER

    def labels(self, *values: str) -> CounterChild:
        return CounterChild(self._child(values))

    def inc(self, amount: float = 1) -> None:
        self.labels().inc(amount)


class GaugeChild:
    __slots__ = ("_value",)

    def __init__(self, value: _Value) -> None:
        self._value = value

    def set(self, value: float) -> None:
        self._value.value = value

    def inc(self, amount: float = 1) -> None:
        self._value.value += amount


class Gauge(_Scalar):
    type = MetricType.GAUGE

    def labels(self, *values: str) -> GaugeChild:
        return GaugeChild(self._child(values))

    def set(self, value: float) -> None:
        self.labels().set(value)

    def inc(self, amount: float = 1) -> None:
        self.labels().inc(amount)


class HistogramChild:
    """One series: a count per bucket (not cumulative; rendering accumulates) and the sum."""

    __slots__ = ("_bounds", "_counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # first bound >= value: le
        self.sum += value

    def cumulative(self) -> list[int]:
        return list(itertools.accumulate(self._counts))


class Histogram(_Metric):
    type = MetricType.HISTOGRAM

    def __init__(
        self, name: str, help: str, buckets: Sequence[float], labelnames: Sequence[str] = ()
    ) -> None:
        super().__init__(name, help, labelnames)
        bounds = tuple(float(b) for b in buckets)
        if bounds and bounds[-1] == math.inf:
            bounds = bounds[:-1]  # +Inf is always there
        if not bounds or any(not math.isfinite(b) for b in bounds):
            raise ValueError(f"histogram {name} needs finite bucket bounds")
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"histogram {name} bucket bounds must increase")
        self.bounds = bounds
        self._series: dict[LabelValues, HistogramChild] = {}
        if not self.labelnames:
            self._series[()] = HistogramChild(bounds)

    def labels(self, *values: str) -> HistogramChild:
        key = self._key(values)
        child = self._series.get(key)
        if child is None:
            child = self._series[key] = HistogramChild(self.bounds)
        return child

    def observe(self, value: float) -> None:
        """Unlabelled only. On a hot path, keep `labels(...)` and call its `observe`."""
        self.labels().observe(value)

    def samples(self) -> Iterable[Sample]:
        les = [*(_number(b) for b in self.bounds), "+Inf"]
        for key, child in self._series.items():
            labels = self._labels(key)
            counts = child.cumulative()
            for le, count in zip(les, counts, strict=True):
                yield Sample(f"{self.name}_bucket", (*labels, ("le", le)), count)
            yield Sample(f"{self.name}_sum", labels, child.sum)
            yield Sample(f"{self.name}_count", labels, counts[-1])


class _Reading(_Metric):
    """A counter or gauge whose values are read from a callable at scrape time."""

    def __init__(
        self, kind: MetricType, name: str, help: str, read: Read, labelnames: Sequence[str]
    ) -> None:
        self.type = kind
        super().__init__(name, help, labelnames)
        self._read = read

    def samples(self) -> Iterable[Sample]:
        reading = self._read()
        if not isinstance(reading, Mapping):
            if self.labelnames:
                raise ValueError(f"{self.name} has labels: its reading must be a mapping")
            yield Sample(self.name, (), float(reading))
            return
        for values, value in reading.items():
            yield Sample(self.name, self._labels(self._key(values)), float(value))


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """The metrics of one process, scraped in the order they were registered."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._names: set[str] = set()  # every sample name, histogram suffixes included

    def _add(self, metric: _M) -> _M:
        names = {metric.name}
        if metric.type is MetricType.HISTOGRAM:
            names.update(metric.name + suffix for suffix in _HISTOGRAM_SUFFIXES)
        if names & self._names:
            raise ValueError(f"metric {metric.name} is already registered (or collides)")
        self._names |= names
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labelnames))

    def histogram(
        self, name: str, help: str, buckets: Sequence[float], labelnames: Sequence[str] = ()
    ) -> Histogram:
        return self._add(Histogram(name, help, buckets, labelnames))

    def counter_reading(
        self, name: str, help: str, read: Read, labelnames: Sequence[str] = ()
    ) -> None:
        """A counter kept elsewhere (it must only go up, or restart at 0 with the process)."""
        self._add(_Reading(MetricType.COUNTER, name, help, read, labelnames))

    def gauge_reading(
        self, name: str, help: str, read: Read, labelnames: Sequence[str] = ()
    ) -> None:
        self._add(_Reading(MetricType.GAUGE, name, help, read, labelnames))

    def collect(self) -> list[MetricFamily]:
        """Every metric now. A reading that fails is left out (logged), not the whole scrape."""
        families = []
        for metric in self._metrics.values():
            try:
                families.append(metric.collect())
            except Exception:
                log.exception("metric %s could not be read", metric.name)
        return families

    def render(self) -> str:
        return render(self.collect())


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(families: Iterable[MetricFamily]) -> str:
    """The text exposition format 0.0.4 of `families` (serve it with `CONTENT_TYPE`)."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type.value}")
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels)
                lines.append(f"{sample.name}{{{labels}}} {_number(sample.value)}")
            else:
                lines.append(f"{sample.name} {_number(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""
