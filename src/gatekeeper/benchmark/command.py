"""`gatekeeper bench`: measure gatekeeper against its own ceilings, in one run, on this machine.

Exit codes: 0 done (whatever the speed figures say); 1 a correctness violation (overshoot,
lost events, answers that differ between transports); 2 the bench cannot run here (bad
option, `wrk` or Envoy missing, a process that did not start); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatekeeper.benchmark import report
from gatekeeper.benchmark.loadgen import WrkMissing, wrk_binary
from gatekeeper.benchmark.model import Results
from gatekeeper.benchmark.options import SCENARIOS, BenchOptions, labels, profile
from gatekeeper.benchmark.plot import PlotUnavailable, latency_plot
from gatekeeper.benchmark.processes import BenchSetupError, Processes
from gatekeeper.benchmark.runner import run
from gatekeeper.command_spec import CommandSpec
from gatekeeper.envoy_runner import EnvoyError, envoy_binary

__all__ = ["BENCH", "add_bench_arguments", "cpu_ticks", "run_bench"]

EXIT_OK, EXIT_VIOLATION, EXIT_CANNOT_RUN, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="small and short (CI): 1 s per figure, few customers")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench/results"),
                        help="output directory (default: bench/results)")  # fmt: skip
    parser.add_argument("--redis-url",
                        help="use this Redis (keys under a fresh prefix, deleted after); default: "
                             "start redis-server (or the embedded one) on a free port")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1,
                        help="gatekeeper serve processes behind Envoy (default 1)")  # fmt: skip
    parser.add_argument("--only", action="append", choices=SCENARIOS, default=[],
                        help="run only this scenario (repeatable)")  # fmt: skip
    parser.add_argument("--scale-customers", type=_counts,
                        help="comma-separated customer counts for the scale scenario")  # fmt: skip
    parser.add_argument("--control-plane-customers", type=_counts,
                        help="comma-separated directory sizes for the control-plane scenario "
                             "(default 1000,100000,1000000; --quick 1000,10000)")  # fmt: skip


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,10000: {text!r}") from exc
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError("customer counts must be >= 1")
    return counts


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0][:120] if text else "unknown"


def machine(options: BenchOptions) -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load1, load5, _ = os.getloadavg()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": f"{os.cpu_count()} cores, {model}",
        "load average at start": f"{load1:.2f} (1 min), {load5:.2f} (5 min)",
        "python": platform.python_version(),
        "envoy": _version([str(envoy_binary()), "--version"]).split("version:")[-1].strip(),
        "wrk": _version([wrk_binary(), "-v"]),
        "redis": options.redis_url or _version(["redis-server", "--version"]),
        "mode": "quick" if options.quick else "full",
        "gatekeeper workers": str(options.workers),
    }


def cpu_ticks() -> list[int] | None:
    """Clock ticks of all CPUs since boot, from /proc/stat: user nice system idle iowait irq
    softirq steal; None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    return [int(x) for x in fields[1:9]]


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) clock ticks of all CPUs since boot; None where cpu_ticks() is."""
    ticks = cpu_ticks()
    return None if ticks is None else (ticks[7], sum(ticks))


def steal_note(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str | None:
    """The share of CPU time the hypervisor took from this machine between two cpu_times()."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    return f"CPU time stolen by the hypervisor during the run: {100 * share:.1f} %"


def _write(
    results: Results, options: BenchOptions, info: Mapping[str, str], command: str
) -> list[Path]:
    ts = report.targets(results, labels(options.workers))
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("bench-%Y%m%dT%H%M%SZ")
    written = []
    for suffix, text in (
        ("json", report.summary_json(results, ts, info, command)),
        ("md", report.markdown(results, ts, info, command)),
    ):
        for name in (f"{stamp}.{suffix}", f"latest.{suffix}"):
            (out / name).write_text(text)
            written.append(out / name)
    try:
        latency_plot(results.figures, out / f"{stamp}.png")
        shutil.copyfile(out / f"{stamp}.png", out / "latest.png")
        written += [out / f"{stamp}.png", out / "latest.png"]
    except PlotUnavailable as exc:
        print(f"bench: no PNG plot: {exc}", file=sys.stderr)
    print(report.table(results, ts))
    return written


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, Results]], Results]:
    """uvloop's runner when installed, as `gatekeeper serve` runs: the in-process figures
    (engine.decide() and its raw EVALSHA baselines) measure the event loop gatekeeper uses."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run
    return uvloop.run


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_bench(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.workers < 1:
        print("bench: --workers must be >= 1", file=sys.stderr)
        return EXIT_CANNOT_RUN
    options = profile(
        quick=args.quick, out=args.out, redis_url=args.redis_url, workers=args.workers,
        only=tuple(args.only), scale_counts=args.scale_customers,
        control_plane_counts=args.control_plane_customers,
    )  # fmt: skip
    try:
        wrk_binary()
        envoy_binary()
    except (WrkMissing, EnvoyError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    args_text = shlex.join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else [])
    command = f"gatekeeper bench {args_text}".strip()
    info = machine(options)
    # Ctrl-C and SIGTERM both stop the run and everything it started (also when SIGINT was
    # ignored by whoever started us, e.g. a background job of a script)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-bench-"))
    processes = Processes(workdir)
    started = time.monotonic()
    ticks = cpu_times()
    failed = True
    try:
        results = _event_loop_runner()(run(options, processes, dict(env)))
        failed = False
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BenchSetupError, EnvoyError, WrkMissing) as exc:
        print(f"bench: cannot run: {exc}\n(logs kept in {workdir})", file=sys.stderr)
        return EXIT_CANNOT_RUN
    finally:
        processes.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not failed:
            shutil.rmtree(workdir, ignore_errors=True)
    results.notes.append(f"run took {time.monotonic() - started:.0f} s")
    stolen = steal_note(ticks, cpu_times())
    if stolen is not None:  # a noisy neighbour: ratios hold up better than absolute figures
        results.notes.append(stolen)
    written = _write(results, options, info, command)
    print("\nwritten: " + ", ".join(str(p) for p in written))
    return EXIT_VIOLATION if results.violations() else EXIT_OK


BENCH = CommandSpec(
    "bench",
    "measure gatekeeper beside its baselines (Envoy alone, no-op authorizers, raw EVALSHA)",
    add_bench_arguments,
    run_bench,
)
