"""The demo's live terminal view: per customer, answers by status and a bar of the limit it is
closest to (from gatekeeper's own counters), plus the latest alerts. Plain ANSI, no dependency.

On a terminal the block is redrawn in place; otherwise (a pipe, a log) one summary line is
printed every `plain_interval_s`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from gatekeeper.demo.traffic import CustomerStats
from gatekeeper.demo.usage import LimitView
from gatekeeper.demo.webhooks import ReceivedAlert
from gatekeeper.money import format_money

__all__ = ["Display", "Snapshot", "bar", "render"]

BAR_WIDTH = 24
_STATUS_COLUMNS = (401, 402, 403, 429)


@dataclass(frozen=True, slots=True)
class Snapshot:
    elapsed_s: float
    duration_s: float | None
    stats: Mapping[str, CustomerStats]
    usage: Mapping[str, tuple[LimitView, ...]]
    alerts: Sequence[ReceivedAlert]
    alerts_total: int
    transport_errors: int
    currency: str = "USD"  # the demo policy's


def bar(ratio: float, width: int = BAR_WIDTH) -> str:
    filled = max(0, min(width, round(ratio * width)))
    return "█" * filled + "░" * (width - filled)


def _closest_limit(limits: tuple[LimitView, ...]) -> LimitView | None:
    """The quota or spend limit with the highest used/limit (rates refill too fast to show)."""
    candidates = [x for x in limits if x.kind in ("quota", "spend") and x.limit > 0]
    return max(candidates, key=lambda x: x.ratio, default=None)


def _limit_cell(limit: LimitView | None, currency: str) -> str:
    if limit is None:
        return ""
    name = "spend" if limit.kind == "spend" else limit.feature
    if limit.kind == "spend":
        amounts = f"{format_money(limit.used, currency)} / {format_money(limit.limit, currency)}"
    else:
        amounts = f"{limit.used:,} / {limit.limit:,}"
    return f"{name:<14.14} [{bar(limit.ratio)}] {100 * limit.ratio:5.1f}%  {amounts}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def render(snap: Snapshot) -> list[str]:
    """The view as lines (no ANSI), one per customer plus header and alerts."""
    sent = sum(s.sent for s in snap.stats.values())
    if snap.duration_s:
        done = min(1.0, snap.elapsed_s / snap.duration_s)
        head = f"[{bar(done, 16)}] {_clock(snap.elapsed_s)} / {_clock(snap.duration_s)}"
    else:
        head = f"{_clock(snap.elapsed_s)} elapsed · Ctrl-C stops everything"
    lines = [f"gatekeeper demo  {head}  · {sent:,} requests through Envoy"]
    codes = "".join(f"{code:>6}" for code in _STATUS_COLUMNS)
    lines.append(f"  {'customer':<9}{'sent':>7}{'ok':>7}{codes}{'5xx':>6}  closest limit")
    for customer, stats in snap.stats.items():
        counts = "".join(f"{stats.statuses.get(code, 0):>6}" for code in _STATUS_COLUMNS)
        counts += f"{sum(n for code, n in stats.statuses.items() if code >= 500):>6}"
        cell = _limit_cell(_closest_limit(snap.usage.get(customer, ())), snap.currency)
        last = f"  last denial: {stats.last_denial}" if stats.last_denial else ""
        lines.append(
            f"  {customer:<9}{stats.sent:>7}{stats.admitted:>7}{counts}  {cell}{last}".rstrip()
        )
    recent = " · ".join(f"{a.customer} {a.summary}" for a in list(snap.alerts)[-3:])
    lines.append(
        f"  alerts received: {snap.alerts_total}" + (f"  latest: {recent}" if recent else "")
    )
    if snap.transport_errors:
        lines.append(f"  transport errors: {snap.transport_errors}")
    return lines


class Display:
    """Writes snapshots to `out`: redrawn in place on a terminal, a line at a time otherwise."""

    def __init__(self, out: TextIO, *, plain_interval_s: float = 10.0) -> None:
        self._out = out
        self._tty = out.isatty()
        self._drawn = 0
        self._plain_interval_s = plain_interval_s
        self._last_plain = float("-inf")

    def show(self, snap: Snapshot, *, final: bool = False) -> None:
        lines = render(snap)
        if self._tty:
            width = 200
            moved = f"\x1b[{self._drawn}F" if self._drawn else ""
            body = "".join(f"\x1b[2K{line[:width]}\n" for line in lines)
            self._out.write(moved + body)
            self._drawn = len(lines)
        else:
            now = time.monotonic()
            if not final and now - self._last_plain < self._plain_interval_s:
                return
            self._last_plain = now
            self._out.write("\n".join(lines) + "\n")
        self._out.flush()
