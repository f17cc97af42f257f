"""The run's report: a text table (stdout), Markdown, JSON, and the targets of issue 6.

Every figure is printed beside its baseline from the same run: `ratio` = figure / baseline, and
for through-Envoy figures the latency added over Envoy alone at the same load.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gatekeeper.benchmark.model import Check, Figure, Results, Target

__all__ = ["markdown", "summary_json", "table", "targets"]

_HEAD = ("scenario", "figure", "value", "unit", "p50 ms", "p99 ms", "p99.9 ms", "ratio",
         "baseline", "+p50 ms", "+p99 ms", "+p99.9 ms", "note")  # fmt: skip


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 and digits == 0 else f"{value:,.{digits}f}"


def _cells(f: Figure) -> tuple[str, ...]:
    return (
        f.scenario, f.name, _num(f.value, 0 if abs(f.value) >= 100 else 2), f.unit,
        _num(f.p50_ms), _num(f.p99_ms), _num(f.p999_ms), _num(f.ratio), f.baseline or "",
        _num(f.added_p50_ms), _num(f.added_p99_ms), _num(f.added_p999_ms), f.note,
    )  # fmt: skip


def _check_cells(c: Check) -> tuple[str, ...]:
    verdict = "ok" if not c.violations else "; ".join(c.violations)
    return (c.scenario, c.level, c.customer, c.kind, str(c.limit), str(c.sent), str(c.admitted),
            str(c.denied), str(c.other), str(c.counter), str(c.events), verdict)  # fmt: skip


_CHECK_HEAD = ("scenario", "load", "customer", "kind", "limit", "sent", "admitted", "denied",
               "other", "counter", "events", "verdict")  # fmt: skip


def _text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _ratio_of(figure: Figure | None) -> float | None:
    return figure.ratio if figure else None


def _same(equal: bool) -> str:
    return "identical" if equal else "DIFFERENT"


def _sat(results: Results, label: str) -> Figure | None:
    return next((f for f in results.figures if f.name.startswith(f"{label} @ saturation")), None)


def _one(results: Results, label: str) -> Figure | None:
    return results.figure(f"{label} @ 1 conn")


def targets(results: Results, labels: Mapping[str, str]) -> list[Target]:
    """Issue 6's targets, from this run's figures (None = not measured), then the scenarios'
    own (control-plane). Never a failure."""

    def ratio(a: Figure | None, b: Figure | None) -> float | None:
        return a.value / b.value if a and b and b.value else None

    alone, http, grpc, noop_grpc = (
        _sat(results, labels[k]) for k in ("alone", "gk-http", "gk-grpc", "noop-grpc")
    )
    engine = next(
        (
            f
            for f in results.figures
            if f.scenario == "engine"
            and f.name.startswith("engine.decide(),")
            and not f.name.endswith(" 1 task")
        ),
        None,
    )
    one_http = _one(results, labels["gk-http"])
    rows = [
        ("HTTP path ≥ 25 % of Envoy alone (saturation)", ratio(http, alone), 0.25, "≥ 0.25"),
        ("HTTP path ≥ 2.5× gRPC mode (saturation)", ratio(http, grpc), 2.5, "≥ 2.5"),
        ("gRPC mode ≥ 80 % of no-op grpc.aio (saturation)", ratio(grpc, noop_grpc), 0.8, "≥ 0.80"),
        ("engine ≥ 60 % of raw EVALSHA ceiling", _ratio_of(engine), 0.6, "≥ 0.60"),
    ]  # fmt: skip
    out = [Target(name, value, goal, None if value is None else value >= bound)
           for name, value, bound, goal in rows]  # fmt: skip
    added = one_http.added_p99_ms if one_http else None
    out.append(Target("HTTP path added p99 at 1 connection ≤ 1.0 ms", added, "≤ 1.0 ms",
                      None if added is None else added <= 1.0))  # fmt: skip
    return out + results.targets


def _target_rows(ts: Sequence[Target]) -> list[tuple[str, ...]]:
    return [
        (t.name, "" if t.measured is None else f"{t.measured:.3f}", t.goal,
         "not measured" if t.met is None else "met" if t.met else "NOT met")
        for t in ts
    ]  # fmt: skip


def table(results: Results, ts: Sequence[Target]) -> str:
    parts = [_text_table(_HEAD, [_cells(f) for f in results.figures])]
    if results.checks:
        parts += ["", "correctness (hard limit / spend cap driven past the limit under load):",
                  _text_table(_CHECK_HEAD, [_check_cells(c) for c in results.checks])]  # fmt: skip
    for c in results.comparisons:
        parts.append(
            f"answers {c.left} vs {c.right}, {c.name}: {'identical' if c.equal else 'DIFFERENT'}"
        )
    parts += ["", "targets (reported, never failed on):",
              _text_table(("target", "measured", "goal", ""), _target_rows(ts))]  # fmt: skip
    violations = results.violations()
    parts.append(f"\ncorrectness: {len(violations)} violation(s)")
    parts += [f"  {v}" for v in violations]
    return "\n".join(parts)


def markdown(
    results: Results, ts: Sequence[Target], machine: Mapping[str, str], command: str
) -> str:
    lines = ["# gatekeeper bench", "", f"`{command}`", ""]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    lines += ["", _md_table(_HEAD, [_cells(f) for f in results.figures]), ""]
    if results.checks:
        lines += [
            "## Correctness",
            "",
            _md_table(_CHECK_HEAD, [_check_cells(c) for c in results.checks]),
            "",
        ]
    if results.comparisons:
        lines += ["| answers compared | transports | result |", "|---|---|---|"]
        lines += [f"| {c.name} | {c.left} vs {c.right} | {_same(c.equal)} |"
                  for c in results.comparisons]  # fmt: skip
        lines.append("")
    lines += ["## Targets (reported, never failed on)", "",
              _md_table(("target", "measured", "goal", ""), _target_rows(ts)), ""]  # fmt: skip
    violations = results.violations()
    lines.append(f"Correctness violations: {len(violations)}")
    lines += [f"- {v}" for v in violations]
    lines += [f"- note: {n}" for n in results.notes]
    return "\n".join(lines) + "\n"


def summary_json(
    results: Results, ts: Sequence[Target], machine: Mapping[str, str], command: str
) -> str:
    doc: dict[str, Any] = {
        "command": command,
        "machine": dict(machine),
        "figures": [dataclasses.asdict(f) for f in results.figures],
        "correctness": {
            "checks": [dataclasses.asdict(c) for c in results.checks],
            "comparisons": [
                {**dataclasses.asdict(c), "equal": c.equal} for c in results.comparisons
            ],
            "violations": results.violations(),
            "overshoot": sum(
                1 for c in results.checks for v in c.violations if v.startswith("overshoot")
            ),
            "lost": sum(1 for c in results.checks for v in c.violations if v.startswith("lost")),
        },
        "targets": [dataclasses.asdict(t) for t in ts],
        "notes": results.notes,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
