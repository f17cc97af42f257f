"""Load through Envoy with Debian's `wrk`: requests/s and the latency distribution.

A Lua script sets the request (method, headers) and, in wrk's `done()` hook, prints one line
`WRK_JSON {...}` with the request count, errors and latency percentiles (µs), which
`parse_wrk` reads. wrk has no fixed-rate mode (wrk2 is not packaged): a target rate is
approximated with wrk's `delay()` hook — each connection waits `delay_ms` (whole ms) after each
answer — and `connections_for_rate` picks the connection count; the achieved rate is reported.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Load",
    "WrkMissing",
    "WrkResult",
    "connections_for_rate",
    "parse_wrk",
    "run_wrk",
    "wrk_script",
]

MARKER = "WRK_JSON "

_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
    .. '"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}\\n',
    "WRK_JSON ", summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


class WrkMissing(RuntimeError):
    """`wrk` is not installed."""


@dataclass(frozen=True, slots=True)
class Load:
    """How hard to drive: `connections` flat out, or each waiting `delay_ms` between requests."""

    label: str
    connections: int
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # socket errors + timeouts
    non_2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(method: str, headers: Mapping[str, str], delay_ms: int = 0) -> str:
    lines = [f"wrk.method = {_lua_string(method)}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    if delay_ms > 0:
        lines.append(f"function delay() return {int(delay_ms)} end")
    return "\n".join(lines) + "\n" + _DONE


def parse_wrk(stdout: str) -> WrkResult:
    """The figures of one wrk run from its output. Raises ValueError if the marker is missing."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            d = json.loads(line[len(MARKER) :])
            return WrkResult(
                requests=int(d["requests"]),
                duration_s=int(d["duration_us"]) / 1e6,
                errors=int(d["connect"]) + int(d["read"]) + int(d["write"]) + int(d["timeout"]),
                non_2xx=int(d["status"]),
                p50_ms=d["p50"] / 1000,
                p90_ms=d["p90"] / 1000,
                p99_ms=d["p99"] / 1000,
                p999_ms=d["p999"] / 1000,
                max_ms=d["max"] / 1000,
            )
    raise ValueError(f"no {MARKER.strip()} line in wrk output:\n{stdout[-1500:]}")


def connections_for_rate(rate: float, latency_ms: float, delay_ms: int = 2) -> int:
    """Connections that, each waiting `delay_ms` after an answer that takes `latency_ms`,
    offer about `rate` requests/s in total (at least 1)."""
    cycle_s = (delay_ms + max(latency_ms, 0.0)) / 1000
    return max(1, math.floor(rate * cycle_s + 0.5))


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissing("wrk not found: install it (Debian/Ubuntu: apt-get install wrk)")
    return found


async def run_wrk(
    url: str,
    load: Load,
    *,
    seconds: float,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    """Drive `url` for `seconds` at `load`. Raises WrkMissing, or RuntimeError if wrk failed."""
    binary = wrk_binary()
    threads = min(2, load.connections)
    with tempfile.TemporaryDirectory(prefix="gk-wrk-") as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(wrk_script(method, headers or {}, load.delay_ms))
        proc = await asyncio.create_subprocess_exec(
            binary, "-t", str(threads), "-c", str(load.connections),
            "-d", f"{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(script), url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {err.decode(errors='replace')}")
    return parse_wrk(out.decode(errors="replace"))
