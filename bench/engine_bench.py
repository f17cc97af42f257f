"""Engine throughput beside the raw EVALSHA rate of the same script, measured in one run.

    .venv/bin/python bench/engine_bench.py [--redis-url URL] [--seconds 5] [--concurrency 64]

Without --redis-url (or GATEKEEPER_REDIS_URL) an embedded Redis is started. Three figures:
  raw      EVALSHA of decide.lua with a precomputed KEYS/ARGV, through redis-py asyncio
  engine   DecisionEngine.decide() end to end (plan, encode, EVALSHA, decode)
  server   redis-benchmark running the same EVALSHA (the server's own ceiling), if installed
Reported as decisions/s and as ratios to `raw`, so a noisy machine still compares like with like.
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
from pathlib import Path

from redis.asyncio import BlockingConnectionPool, Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.clock import SystemClock
from gatekeeper.engine import DecisionEngine, DecisionRequest, MeterRequest, StaticPolicy
from gatekeeper.engine.plan import DecisionPlan
from gatekeeper.model import Enforcement, RateUnit
from gatekeeper.settings import RedisSettings
from gatekeeper.store import EmbeddedRedis, RedisDecisionStore
from gatekeeper.store.codec import encode, to_us
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
    cmd = [
        binary,
        "-h",
        host,
        "-p",
        port or "6379",
        "-c",
        "64",
        "-n",
        str(int(40_000 * seconds)),
        "-q",
        "evalsha",
        sha,
        str(len(keys)),
        *keys,
        *map(str, args),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    found = re.findall(r"([\d.]+) requests per second", out)
    return float(found[-1]) if found else None


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default=os.environ.get("GATEKEEPER_REDIS_URL"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()

    embedded = None if opts.redis_url else EmbeddedRedis(port=0).start()
    url = opts.redis_url or embedded.url  # type: ignore[union-attr]
    prefix = f"gkbench-{uuid.uuid4().hex[:8]}"
    client = Redis(
        connection_pool=BlockingConnectionPool.from_url(url, max_connections=opts.concurrency)
    )
    try:
        store = RedisDecisionStore(redis=client, settings=RedisSettings(key_prefix=prefix))
        engine = DecisionEngine(policy=StaticPolicy(POLICY), store=store, clock=SystemClock())
        await engine.decide(REQUEST)  # loads the script
        # the raw call: same script, KEYS and ARGV the engine sends for REQUEST
        captured: dict[str, object] = {}
        original = store.decide

        async def capture(plan_: DecisionPlan, **kw: object) -> object:
            captured["plan"] = plan_
            return await original(plan_, **kw)  # type: ignore[arg-type]

        store.decide = capture  # type: ignore[method-assign,assignment]
        await engine.decide(REQUEST)
        store.decide = original  # type: ignore[method-assign]
        p: DecisionPlan = captured["plan"]  # type: ignore[assignment]
        s = RedisSettings(key_prefix=prefix)
        head: list[str | int] = [
            to_us(p.now),
            "bench",
            p.customer_id,
            p.plan,
            "",
            "",
            0,
            s.idempotency_ttl_s * 1000,
            s.reservation_ttl_s * 1000,
            p.currency,
            0,
        ]
        enc = encode(
            p, store.keys, head=head, idempotency_key=None, decision_id="bench", grace_s=3600
        )
        sha = store.decide_script.sha
        argv = enc.packed()

        async def raw() -> object:
            return await client.evalsha(sha, len(enc.keys), *enc.keys, *argv)

        async def decide() -> object:
            return await engine.decide(REQUEST)

        rows = []
        for _ in range(opts.rounds):
            r = await _rate(raw, opts.seconds, opts.concurrency)
            e = await _rate(decide, opts.seconds, opts.concurrency)
            await client.delete(store.keys.usage_stream(store.keys.partition("cust")))
            rows.append((r, e))
        raw_med = sorted(r for r, _ in rows)[len(rows) // 2]
        eng_med = sorted(e for _, e in rows)[len(rows) // 2]
        server = _server_ceiling(url, sha, enc.keys, argv, opts.seconds)
        print(
            f"redis: {'embedded ' + url if embedded else url}; concurrency {opts.concurrency}; "
            f"{opts.rounds} rounds x {opts.seconds:.0f}s (medians)"
        )
        print(f"raw EVALSHA (redis-py asyncio): {raw_med:10.0f}/s  1.00")
        print(f"engine.decide():                {eng_med:10.0f}/s  {eng_med / raw_med:.2f} of raw")
        if server:
            print(
                f"redis-benchmark EVALSHA:        {server:10.0f}/s  {server / raw_med:.2f} of raw "
                f"(engine = {eng_med / server:.2f} of the server ceiling)"
            )
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        await client.aclose()
        if embedded:
            embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())
