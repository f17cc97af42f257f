"""Engine alone: decisions/s and latency of `engine.decide()` beside raw EVALSHA of the same call.

The raw call is captured from the engine itself (Redis MONITOR while it decides once), so the
baseline runs the same script with the same KEYS and ARGV. Baselines, same run, same Redis:
raw EVALSHA over plain sockets from this process (1 connection; N connections unpipelined;
pipelined batches), and `redis-benchmark` (the server's own ceiling) when it is installed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from gatekeeper.benchmark.inprocess import delete_prefix, running_app
from gatekeeper.benchmark.model import Figure, percentiles_ms
from gatekeeper.benchmark.policy import HOT, BenchPolicy
from gatekeeper.benchmark.resp import capture_evalsha, command_bytes, drive
from gatekeeper.engine import DecisionEngine, DecisionRequest, MeterRequest, Outcome

__all__ = ["EngineProfile", "run_engine"]

SCENARIO = "engine"
REQUEST = DecisionRequest(
    HOT, requires=("api_access",), meters=(MeterRequest("requests", 1), MeterRequest("tokens", 20))
)


@dataclass(frozen=True, slots=True)
class EngineProfile:
    seconds: float
    tasks: int = 64  # concurrent decide() calls (and unpipelined raw connections)
    pipe_connections: int = 4
    pipe_batch: int = 32


async def _decide_for(
    engine: DecisionEngine, tasks: int, seconds: float
) -> tuple[float, list[int]]:
    latencies: list[int] = []
    done = 0
    stop_at = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter_ns()
            decision = await engine.decide(REQUEST)
            latencies.append(time.perf_counter_ns() - t0)
            if decision.outcome is not Outcome.ALLOWED:
                raise RuntimeError(f"bench decision was not admitted: {decision.outcome}")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    return done / (time.perf_counter() - start), latencies


def _figure(
    name: str, rate: float, lat_ns: list[int], baseline: Figure | None, note: str = ""
) -> Figure:
    p50, p99, p999 = percentiles_ms(lat_ns)
    return Figure(
        SCENARIO, name, rate, "decisions/s", p50, p99, p999,
        baseline=baseline.name if baseline else None,
        ratio=rate / baseline.value if baseline and baseline.value else None, note=note,
    )  # fmt: skip


async def _redis_benchmark(
    url: str, args: list[str], *, clients: int, pipeline: int, total: int
) -> Figure | None:
    """redis-benchmark running the captured EVALSHA `total` times (the server's ceiling);
    None if it is not installed or Redis is not on TCP."""
    binary = shutil.which("redis-benchmark")
    parsed = urlparse(url)
    if binary is None or parsed.scheme != "redis":
        return None
    proc = await asyncio.create_subprocess_exec(
        binary, "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 6379),
        "-c", str(clients), "-P", str(pipeline), "-n", str(total), "--csv", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    rows = list(csv.reader(io.StringIO(out.decode(errors="replace"))))
    if len(rows) < 2:
        return None
    head, last = rows[0], rows[-1]
    value = dict(zip(head, last, strict=False))
    return Figure(
        SCENARIO,
        f"redis-benchmark EVALSHA, {clients} clients, pipeline {pipeline}",
        float(value.get("rps", 0)),
        "calls/s",
        float(value.get("p50_latency_ms", 0) or 0),
        float(value.get("p99_latency_ms", 0) or 0),
        note="server ceiling (C client); latency per call as redis-benchmark reports it",
    )


async def run_engine(redis_url: str, prefix: str, profile: EngineProfile) -> list[Figure]:
    """The engine figures; keys under `prefix` are deleted afterwards."""
    try:
        async with running_app(BenchPolicy(pool=1).text(), redis_url, prefix) as engine:
            await engine.decide(REQUEST)  # script loaded, connections open
            args = await capture_evalsha(redis_url, lambda: engine.decide(REQUEST))
            command = command_bytes(args)
            secs = profile.seconds

            raw1 = await drive(redis_url, command, connections=1, batch=1, seconds=secs)
            f_raw1 = _figure("raw EVALSHA, 1 connection", raw1.rate, raw1.latencies_ns, None,
                             "same script/KEYS/ARGV as the engine sends; plain socket")  # fmt: skip
            rate, lat = await _decide_for(engine, 1, secs)
            f_eng1 = _figure("engine.decide(), 1 task", rate, lat, f_raw1)

            n = profile.tasks
            rawn = await drive(redis_url, command, connections=n, batch=1, seconds=secs)
            f_rawn = _figure(f"raw EVALSHA, {n} connections unpipelined", rawn.rate,
                             rawn.latencies_ns, None)  # fmt: skip
            pc, pb = profile.pipe_connections, profile.pipe_batch
            rawp = await drive(redis_url, command, connections=pc, batch=pb, seconds=secs)
            f_rawp = _figure(f"raw EVALSHA, pipelined {pc}x{pb}", rawp.rate, rawp.latencies_ns,
                             None, "latency per batch")  # fmt: skip
            server = [
                # sized from the rates just measured, to run about `seconds` each
                await _redis_benchmark(
                    redis_url, args, clients=n, pipeline=1, total=int(rawn.rate * secs * 1.5) + 1000
                ),
                await _redis_benchmark(
                    redis_url, args, clients=n, pipeline=16, total=int(rawp.rate * secs * 2) + 1000
                ),
            ]
            ceiling = server[1] or f_rawp
            rate, lat = await _decide_for(engine, n, secs)
            note = (f"{rate / rawn.rate:.2f} of raw unpipelined; "
                    f"{rate / rawp.rate:.2f} of raw pipelined")  # fmt: skip
            f_engn = _figure(f"engine.decide(), {n} tasks", rate, lat, ceiling, note)
    finally:
        await delete_prefix(redis_url, prefix)
    return [f_raw1, f_eng1, f_rawn, f_rawp, *(s for s in server if s), f_engn]
