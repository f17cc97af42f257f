"""CPU of each process per request through Envoy at saturation: where the time goes.

    .venv/bin/python bench/cpu_per_request.py [--seconds 6] [--connections 32] [--repeat 2]
        [alone] [noop-http] [gk-http] [noop-grpc] [gk-grpc] [gk-http-traced] [gk-grpc-traced]

Starts what `gatekeeper bench` starts (its Redis, upstream Envoy, no-op authorizers, gatekeeper
serve with 1 worker, one front Envoy per configuration, from the same bootstraps and policy),
drives each configuration with wrk (the bench's POST route and headers), and reads the CPU
time (user + system, `/proc/<pid>/stat`, threads and child processes included) each process
spent during the run, divided by the requests it passed. `wrk, kernel` is the rest of the
machine's busy time (wrk itself, interrupts, anything else running; the counters tick at
10 ms, so runs of a few seconds leave it a few µs either way); `idle` the share of both
cores nobody used. `EVALSHA` is Redis's own time per script call over the run (INFO
commandstats). bench/README.md ("Where the time goes") has tables made with it.

`gk-http-traced` / `gk-grpc-traced` run a second `gatekeeper serve` with tracing on
(OTEL_EXPORTER_OTLP_ENDPOINT at bench/otlp_sink.py, a local sink that accepts and discards;
OTEL_TRACES_SAMPLER=always_on: every decision is a span, exported): its `authz` column beside
`gk-http`'s is the cost of tracing on (the exporter runs in gatekeeper's own process; the
sink's CPU falls in `wrk, k.`). Every other gatekeeper runs with the OTEL_* variables removed
from its environment, so tracing is off there whatever the shell has set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from redis import Redis

from gatekeeper.benchmark.bootstraps import front, upstream
from gatekeeper.benchmark.command import cpu_ticks
from gatekeeper.benchmark.loadgen import Load, run_wrk
from gatekeeper.benchmark.policy import ROUTE_PATH, BenchPolicy, ratelimit_config_text
from gatekeeper.benchmark.processes import Processes, free_port, wait_until
from gatekeeper.benchmark.scenarios.envoy import request_headers
from gatekeeper.benchmark.stack import start_envoy, start_gatekeeper, start_noop

CONFIGURATIONS = (
    "alone", "noop-http", "gk-http", "noop-grpc", "gk-grpc", "gk-http-traced", "gk-grpc-traced",
)  # fmt: skip
_SINK = Path(__file__).with_name("otlp_sink.py")
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a process's threads are counted in its own /proc stat)."""
    found = [pid]
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _tree(int(child))
    return found


def _cpu_s(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total * _TICK_S


def _machine_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (idle and iowait are not busy)."""
    ticks = cpu_ticks()
    if ticks is None:
        raise SystemExit("cpu_per_request: needs Linux /proc")
    total = sum(ticks)
    return (total - ticks[3] - ticks[4]) * _TICK_S, total * _TICK_S


def _evalsha(redis: Redis) -> tuple[int, int]:
    """(calls, µs) of EVALSHA so far."""
    stats: Mapping[str, Mapping[str, int]] = redis.info("commandstats")
    found = stats.get("cmdstat_evalsha", {})
    return int(found.get("calls", 0)), int(found.get("usec", 0))


async def _row(
    name: str, url: str, groups: Mapping[str, list[int]], redis: Redis, load: Load, seconds: float
) -> str:
    """One wrk run at `load`; the line of the table."""
    before = {g: _cpu_s(p) for g, p in groups.items()}
    busy0, total0 = _machine_s()
    calls0, usec0 = _evalsha(redis)
    result = await run_wrk(
        url + ROUTE_PATH, load, seconds=seconds, method="POST", headers=request_headers(name)
    )
    busy1, total1 = _machine_s()
    calls1, usec1 = _evalsha(redis)
    spent = {g: _cpu_s(p) - before[g] for g, p in groups.items()}
    n = max(result.requests, 1)
    us = {g: s / n * 1e6 for g, s in spent.items()}
    rest = (busy1 - busy0 - sum(spent.values())) / n * 1e6
    idle = 1 - (busy1 - busy0) / (total1 - total0)
    calls = calls1 - calls0
    evalsha = f"{(usec1 - usec0) / calls:6.1f} µs" if calls else ""
    errors = result.errors + result.non_2xx
    failed = f"  ({result.errors} errors, {result.non_2xx} non-2xx)" if errors else ""
    return (
        f"{name:14} {result.rps:7.0f}  {us['front']:6.1f} {us['authz']:6.1f} {us['redis']:6.1f} "
        f"{us['upstream']:6.1f} {rest:6.1f}  {idle:5.1%}  {evalsha}{failed}"
    )


def _untraced(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("OTEL_")}


def _start_sink(processes: Processes) -> int:
    """bench/otlp_sink.py on a free port; returns the port once it listens."""
    port = free_port()
    child = processes.spawn("otlp-sink", [sys.executable, str(_SINK), "--port", str(port)])
    wait_until(
        lambda: child.log_path.read_text().startswith("ready"),
        what=f"OTLP sink; log: {child.log_path}", timeout_s=10, alive=child.alive,
    )  # fmt: skip
    return port


def _sink_count(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=2) as r:
        requests, size = r.read().decode().split()
    return f"OTLP sink: {requests} export requests, {int(size) / 1e6:.1f} MB"


async def _measure(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-cpu-"))
    processes = Processes(workdir)
    redis: Redis | None = None
    try:
        redis_url = processes.redis()
        redis = Redis.from_url(redis_url)
        redis_pid = int(redis.info("server")["process_id"])
        policy = processes.workdir / "policy.yaml"
        policy.write_text(BenchPolicy().text())
        ratelimit = processes.workdir / "ratelimit"
        ratelimit.mkdir()
        (ratelimit / "bench.yaml").write_text(ratelimit_config_text())
        env = _untraced(os.environ)
        up = start_envoy(processes, upstream(), name="upstream", concurrency=1)
        noop = start_noop(processes, env)
        gk = start_gatekeeper(
            processes, name="gatekeeper", policy=policy, ratelimit_config=ratelimit,
            redis_url=redis_url, prefix=f"cpu-{uuid.uuid4().hex[:8]}", workers=1, env=env,
        )  # fmt: skip
        traced = gk
        sink = None
        if any(name.endswith("-traced") for name in args.configurations):
            sink = _start_sink(processes)
            traced_env = env | {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink}",
                "OTEL_TRACES_SAMPLER": "always_on",
                "OTEL_SERVICE_NAME": "gatekeeper-bench",
            }
            traced = start_gatekeeper(
                processes, name="gatekeeper-traced", policy=policy, ratelimit_config=ratelimit,
                redis_url=redis_url, prefix=f"cpu-{uuid.uuid4().hex[:8]}", workers=1,
                env=traced_env,
            )  # fmt: skip
        authorizers = {
            "alone": ("alone", 0, 0),
            "noop-http": ("http", noop.http_port, noop.pid),
            "gk-http": ("http", gk.http_port, gk.pid),
            "noop-grpc": ("grpc", noop.grpc_port, noop.pid),
            "gk-grpc": ("grpc", gk.grpc_port, gk.pid),
            "gk-http-traced": ("http", traced.http_port, traced.pid),
            "gk-grpc-traced": ("grpc", traced.grpc_port, traced.pid),
        }
        fronts = {}
        for name in args.configurations:
            kind, port, _ = authorizers[name]
            bootstrap = front(kind, upstream_port=up.listener_port, authz_port=port)
            fronts[name] = start_envoy(processes, bootstrap, name=name)
        print(
            f"{'configuration':14} {'req/s':>7}  {'front':>6} {'authz':>6} {'Redis':>6} "
            f"{'upstr.':>6} {'wrk,k.':>6}  {'idle':>5}  EVALSHA   (µs of CPU per request)"
        )
        load = Load(f"{args.connections} connections", args.connections)
        for _ in range(args.repeat):
            for name, envoy in fronts.items():
                groups = {
                    "front": _tree(envoy.pid or 0),
                    "authz": _tree(authorizers[name][2]) if authorizers[name][2] else [],
                    "redis": [redis_pid],
                    "upstream": _tree(up.pid or 0),
                }
                print(await _row(name, envoy.url, groups, redis, load, args.seconds), flush=True)
        if sink is not None:
            print(_sink_count(sink))
    finally:
        if redis is not None:
            redis.close()
        processes.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("configurations", nargs="*", choices=CONFIGURATIONS, default=[])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    args.configurations = args.configurations or ["alone", "noop-http", "gk-http"]
    asyncio.run(_measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
