"""Engine throughput beside the raw EVALSHA rate of the same script, measured in one run.

    .venv/bin/python bench/engine_bench.py [--redis-url URL] [--seconds 5] [--concurrency 64]
                                           [--rounds 3] [--loop uvloop|asyncio]

Without --redis-url (or GATEKEEPER_REDIS_URL) an embedded Redis is started. Figures, each the
median of --rounds, all from one process with --concurrency tasks:
  raw unpipelined   EVALSHA of decide.lua with the engine's own KEYS/ARGV through redis-py
  raw pipelined     the same EVALSHA, pre-encoded, through the auto-pipeline (the ceiling)
  engine redis-py   DecisionEngine.decide() end to end, Lua calls through redis-py
  engine pipelined  DecisionEngine.decide() end to end, Lua calls through the auto-pipeline
  server            redis-benchmark running the same EVALSHA (64 clients), if installed
Ratios are to `raw pipelined`, so a noisy machine still compares like with like.
`measure_engine()` is the function to reuse (it returns the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.clock import SystemClock
from gatekeeper.engine import (
    Decision,
    DecisionEngine,
    DecisionRequest,
    MeterRequest,
    StaticPolicy,
)
from gatekeeper.engine.plan import DecisionPlan
from gatekeeper.model import Enforcement, RateUnit
from gatekeeper.settings import RedisSettings
from gatekeeper.store import EmbeddedRedis, RedisDecisionStore
from gatekeeper.store.codec import encode, to_us
from gatekeeper.store.connection import GatekeeperRedis, connect_redis
from tests.engine.policies import cap, flat, metered, plan, policy, rate, tiered

# A decision shaped like the example's chat completion: quota + rate + tiered price + spend.
POLICY = policy(
    plan(
        "pro",
        metered("requests", 10**12, thresholds=(80, 100)),
        metered("tokens", 10**12, enforcement=Enforcement.SOFT),
        rates=(rate("requests", 10**9, RateUnit.SECOND),),
        spend_cap=cap(2**52),
    ),
    prices=(flat("requests", 2_000_000), tiered("tokens", (10_000_000, 600), (None, 400))),
)
REQUEST = DecisionRequest(
    "cust",
    requires=("api_access",),
    meters=(MeterRequest("requests", 1), MeterRequest("tokens", 20)),
)


@dataclass(frozen=True, slots=True)
class EngineFigures:
    """Calls per second (medians), one process, `concurrency` tasks."""

    url: str
    concurrency: int
    raw_unpipelined: float
    raw_pipelined: float
    engine_redis_py: float
    engine_pipelined: float
    server: float | None  # redis-benchmark, when installed and the URL is TCP


async def _rate(op: Callable[[], Awaitable[object]], seconds: float, concurrency: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await op()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


def _server_ceiling(
    url: str, sha: str, keys: list[str], args: list[str], seconds: float
) -> float | None:
    binary = shutil.which("redis-benchmark")
    if binary is None or not url.startswith("redis://"):
        return None
    host_port = url.removeprefix("redis://").split("/")[0]
    host, _, port = host_port.partition(":")
    cmd = [binary, "-h", host, "-p", port or "6379", "-c", "64", "-n", str(int(40_000 * seconds))]
    cmd += ["-q", "evalsha", sha, str(len(keys)), *keys, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    found = re.findall(r"([\d.]+) requests per second", out)
    return float(found[-1]) if found else None


async def _captured_plan(engine: DecisionEngine, store: RedisDecisionStore) -> DecisionPlan:
    """The plan the engine sends for REQUEST (so the raw call is the engine's own call)."""
    captured: list[DecisionPlan] = []
    original = store.decide

    async def capture(plan_: DecisionPlan, **kw: object) -> object:
        captured.append(plan_)
        return await original(plan_, **kw)  # type: ignore[arg-type]

    store.decide = capture  # type: ignore[method-assign,assignment]
    try:
        await engine.decide(REQUEST)
    finally:
        store.decide = original  # type: ignore[method-assign]
    return captured[0]


def _admitted(decision: Decision) -> Decision:
    if not decision.allowed:  # the bench policy's limits are out of reach: a bug
        raise RuntimeError(f"bench decision not admitted: {decision}")
    return decision


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def measure_engine(
    url: str, *, seconds: float = 5.0, concurrency: int = 64, rounds: int = 3
) -> EngineFigures:
    """Raw EVALSHA (unpipelined, pipelined) and engine.decide() (both paths) on `url`."""
    prefix = f"gkbench-{uuid.uuid4().hex[:8]}"
    settings = RedisSettings(key_prefix=prefix, max_connections=concurrency)
    client: GatekeeperRedis = connect_redis(url, settings)
    plain = connect_redis(url, replace(settings, autopipeline=False))
    pipe = client.autopipeline
    assert pipe is not None, "rediss:// has no auto-pipeline to measure"
    try:
        engines = {}
        for name, c in (("redis-py", plain), ("pipelined", client)):
            store = RedisDecisionStore(redis=c, settings=settings)
            engines[name] = DecisionEngine(
                policy=StaticPolicy(POLICY), store=store, clock=SystemClock()
            )
            await engines[name].decide(REQUEST)  # loads the script, warms the templates
        p = await _captured_plan(engines["pipelined"], store)  # the pipelined engine's store
        head: list[str | int] = [to_us(p.now), "bench", p.customer_id, p.plan, "", "", 0]
        head += [settings.idempotency_ttl_s * 1000, settings.reservation_ttl_s * 1000]
        head += [p.currency, 0]
        enc = encode(
            p,
            store.keys,
            head=head,
            idempotency_key=None,
            decision_id="bench",
            grace_s=settings.period_grace_s,
        )
        script = store.decide_script
        data = script.encode(enc.keys, enc.argv)  # pre-encoded: the client does no work

        async def raw_unpipelined() -> object:
            return await plain.evalsha(script.sha, len(enc.keys), *enc.keys, *enc.argv)

        async def raw_pipelined() -> object:
            return await pipe.execute(data)

        async def decide_pipelined() -> object:
            return _admitted(await engines["pipelined"].decide(REQUEST))

        async def decide_redis_py() -> object:
            return _admitted(await engines["redis-py"].decide(REQUEST))

        ops = {
            "raw_unpipelined": raw_unpipelined,
            "raw_pipelined": raw_pipelined,
            "engine_redis_py": decide_redis_py,
            "engine_pipelined": decide_pipelined,
        }
        samples: dict[str, list[float]] = {name: [] for name in ops}
        for _ in range(rounds):
            for name, op in ops.items():
                samples[name].append(await _rate(op, seconds, concurrency))
            await client.delete(store.keys.usage_stream(store.keys.partition("cust")))
        return EngineFigures(
            url=url,
            concurrency=concurrency,
            server=_server_ceiling(url, script.sha, enc.keys, enc.argv, seconds),
            **{name: _median(values) for name, values in samples.items()},
        )
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        await plain.aclose()
        await client.aclose()


def report(f: EngineFigures, *, embedded: bool, rounds: int, seconds: float) -> str:
    ceiling = f.raw_pipelined
    lines = [
        f"redis: {'embedded ' if embedded else ''}{f.url}; {f.concurrency} tasks; "
        f"{rounds} rounds x {seconds:g}s (medians); ratios to raw pipelined",
        f"raw EVALSHA unpipelined (redis-py):  {f.raw_unpipelined:9.0f}/s  "
        f"{f.raw_unpipelined / ceiling:.2f}",
        f"raw EVALSHA pipelined (autopipeline): {f.raw_pipelined:8.0f}/s  1.00",
        f"engine.decide() via redis-py:        {f.engine_redis_py:9.0f}/s  "
        f"{f.engine_redis_py / ceiling:.2f}",
        f"engine.decide() via autopipeline:    {f.engine_pipelined:9.0f}/s  "
        f"{f.engine_pipelined / ceiling:.2f}",
    ]
    if f.server:
        lines.append(
            f"redis-benchmark EVALSHA (64 clients): {f.server:8.0f}/s  {f.server / ceiling:.2f}"
        )
    return "\n".join(lines)


async def main(opts: argparse.Namespace) -> None:
    embedded = None if opts.redis_url else EmbeddedRedis(port=0).start()
    url = opts.redis_url or embedded.url  # type: ignore[union-attr]
    try:
        figures = await measure_engine(
            url, seconds=opts.seconds, concurrency=opts.concurrency, rounds=opts.rounds
        )
    finally:
        if embedded:
            embedded.stop()
    print(report(figures, embedded=embedded is not None, rounds=opts.rounds, seconds=opts.seconds))
    print(f"event loop: {opts.loop}")


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default=os.environ.get("GATEKEEPER_REDIS_URL"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="serve runs uvloop"
    )
    opts = parser.parse_args()
    if opts.loop == "uvloop":
        import uvloop

        uvloop.run(main(opts))
    else:
        asyncio.run(main(opts))


if __name__ == "__main__":
    cli()
