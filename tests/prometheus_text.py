"""A strict little parser of the Prometheus text exposition format 0.0.4, for tests.

Raises AssertionError on any line that is not a HELP, a TYPE or a sample of a declared
family; checks counter names (`*_total`) and histogram invariants (cumulative buckets ending at
`+Inf`, which equals `_count`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_HELP = re.compile(rf"# HELP ({_NAME}) (.*)")
_TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
_SAMPLE = re.compile(rf"({_NAME})(?:\{{(.*)\}})? (\S+)")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    type: str = ""
    help: str = ""
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)


def _labels(text: str) -> Labels:
    pairs: list[tuple[str, str]] = []
    at = 0
    while at < len(text):
        match = _PAIR.match(text, at)
        assert match is not None, f"bad labels {text!r} at {at}"
        value = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], match.group(2))
        pairs.append((match.group(1), value))
        at = match.end()
    names = [name for name, _ in pairs]
    assert len(set(names)) == len(names), f"repeated label in {text!r}"
    return tuple(sorted(pairs))


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?", text), text
    return float(text)


def _family_of(name: str, families: dict[str, Family]) -> Family:
    if name in families:
        return families[name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and families.get(base, Family("")).type == "histogram":
            return families[base]
    raise AssertionError(f"sample {name} before its # TYPE")


def parse(text: str) -> dict[str, Family]:
    """Every family by name (samples keyed by sample name and sorted labels)."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    families: dict[str, Family] = {}
    for line in text[:-1].split("\n"):
        if m := _HELP.fullmatch(line):
            family = families.setdefault(m.group(1), Family(m.group(1)))
            assert not family.help and not family.samples, f"HELP of {m.group(1)} repeated/late"
            family.help = m.group(2)
        elif m := _TYPE.fullmatch(line):
            family = families.setdefault(m.group(1), Family(m.group(1)))
            assert not family.type and not family.samples, f"TYPE of {m.group(1)} repeated/late"
            family.type = m.group(2)
            if family.type == "counter":
                assert family.name.endswith("_total"), family.name
        elif m := _SAMPLE.fullmatch(line):
            family = _family_of(m.group(1), families)
            key = (m.group(1), _labels(m.group(2) or ""))
            assert key not in family.samples, f"duplicate sample {line!r}"
            family.samples[key] = _value(m.group(3))
        else:
            raise AssertionError(f"not a 0.0.4 line: {line!r}")
    for family in families.values():
        assert family.type, f"{family.name} has no # TYPE"
        if family.type == "histogram":
            _check_histogram(family)
    return families


def _check_histogram(family: Family) -> None:
    series: dict[Labels, list[tuple[float, float]]] = {}
    for (name, labels), value in family.samples.items():
        if name == family.name + "_bucket":
            le = dict(labels)["le"]
            rest = tuple(p for p in labels if p[0] != "le")
            series.setdefault(rest, []).append((_value(le), value))
    assert series, f"histogram {family.name} has no buckets"
    for rest, buckets in series.items():
        buckets.sort()
        assert buckets[-1][0] == math.inf, f"{family.name}{rest} has no +Inf bucket"
        counts = [count for _, count in buckets]
        assert counts == sorted(counts), f"{family.name}{rest} buckets are not cumulative"
        assert family.samples[(family.name + "_count", rest)] == counts[-1]
        assert (family.name + "_sum", rest) in family.samples


def value(families: dict[str, Family], name: str, **labels: str) -> float:
    """One sample's value (`name` may be a histogram's `_count`/`_sum`)."""
    family = _family_of(name, families)
    return family.samples[(name, tuple(sorted(labels.items())))]
