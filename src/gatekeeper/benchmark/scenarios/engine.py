"""Engine alone: decisions/s and latency of `engine.decide()` beside raw EVALSHA of the same call.

The raw call is captured from the engine itself (Redis MONITOR while it decides once), so the
baseline runs the same script with the same KEYS and ARGV, each call under a fresh decision id
of the same length (Redis applies a decision id once: the decision journal); one raw call is
checked to be an admission before any is timed. Baselines, same run, same Redis: raw
EVALSHA over plain sockets from this process (1 connection; N connections unpipelined;
pipelined batches); the faster of the last two is the ceiling the engine is compared with.

`redis-benchmark` is not used: the script's ARGV is binary (MessagePack, store/argpack.py) and
a command line cannot carry its NUL bytes. The last run that had both measured the raw
pipelined baseline here within 7 % of `redis-benchmark -P 16` (12,970 vs 13,849 calls/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import hiredis

from gatekeeper.benchmark.inprocess import delete_prefix, running_app
from gatekeeper.benchmark.model import Figure, percentiles_ms
from gatekeeper.benchmark.policy import HOT, BenchPolicy
from gatekeeper.benchmark.resp import call, capture_evalsha, command_bytes, drive, open_connection
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


def _decision_id(args: list[bytes]) -> bytes:
    """The captured call's decision id: the end of KEYS[4], its reservation record's name
    (args: EVALSHA, sha, numkeys, KEYS...)."""
    return args[6].rsplit(b":", 1)[-1]


async def _check_admits(url: str, args: list[bytes]) -> None:
    """One raw call of the captured command, under a fresh id, must be a new admission ({'N',
    'A', ...}): a baseline timing error replies or refusals would be meaningless."""
    old = _decision_id(args)
    fresh = b"f" * len(old)
    reader, writer = await open_connection(url)
    try:
        reply = await call(reader, writer, [a.replace(old, fresh) for a in args])
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    parser = hiredis.Reader()
    parser.feed(reply)
    parsed = parser.gets()
    if not isinstance(parsed, list) or parsed[:2] != [b"N", b"A"]:
        raise RuntimeError(f"the captured EVALSHA does not admit when replayed: {reply[:200]!r}")


async def run_engine(redis_url: str, prefix: str, profile: EngineProfile) -> list[Figure]:
    """The engine figures; keys under `prefix` are deleted afterwards."""
    try:
        async with running_app(BenchPolicy(pool=1).text(), redis_url, prefix) as engine:
            await engine.decide(REQUEST)  # script loaded, connections open
            args = await capture_evalsha(redis_url, lambda: engine.decide(REQUEST))
            await _check_admits(redis_url, args)
            command = command_bytes(args)
            vary = _decision_id(args)
            secs = profile.seconds

            raw1 = await drive(redis_url, command, connections=1, batch=1, seconds=secs, vary=vary)
            f_raw1 = _figure("raw EVALSHA, 1 connection", raw1.rate, raw1.latencies_ns, None,
                             "same script/KEYS/ARGV as the engine sends; plain socket")  # fmt: skip
            rate, lat = await _decide_for(engine, 1, secs)
            f_eng1 = _figure("engine.decide(), 1 task", rate, lat, f_raw1)

            n = profile.tasks
            rawn = await drive(redis_url, command, connections=n, batch=1, seconds=secs, vary=vary)
            f_rawn = _figure(f"raw EVALSHA, {n} connections unpipelined", rawn.rate,
                             rawn.latencies_ns, None)  # fmt: skip
            pc, pb = profile.pipe_connections, profile.pipe_batch
            rawp = await drive(
                redis_url, command, connections=pc, batch=pb, seconds=secs, vary=vary
            )
            f_rawp = _figure(f"raw EVALSHA, pipelined {pc}x{pb}", rawp.rate, rawp.latencies_ns,
                             None, "latency per batch")  # fmt: skip
            rate, lat = await _decide_for(engine, n, secs)
            # the ceiling is the faster raw way (with a light script, this process's own
            # pipelined driver can be slower than 64 sockets unpipelined)
            ceiling, other = (f_rawp, f_rawn) if f_rawp.value >= f_rawn.value else (f_rawn, f_rawp)
            note = f"{rate / other.value:.2f} of {other.name}" if other.value else ""
            f_engn = _figure(f"engine.decide(), {n} tasks", rate, lat, ceiling, note)
    finally:
        await delete_prefix(redis_url, prefix)
    return [f_raw1, f_eng1, f_rawn, f_rawp, f_engn]
