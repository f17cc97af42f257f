"""What `settings.redis.wait_replicas` costs: decisions through the engine on a private local
Redis Cluster (3 primaries, 3 replicas), with WAIT off and with WAIT 1 behind every call.

    .venv/bin/python bench/wait_cost.py [--decisions 3000] [--concurrency 1 32] [--rounds 2]

For each concurrency: decisions/s and latency p50/p99 of `engine.decide` (one customer per
decision, spread over every primary), interleaved off/on rounds, medians printed. Loopback
and 2 shared cores: a replica acknowledges within a fraction of a millisecond, so this is the
floor of the cost; across a network add one replica round trip per decision.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid

from gatekeeper.benchmark.inprocess import running_app
from gatekeeper.engine import DecisionEngine, DecisionRequest, MeterRequest
from gatekeeper.store.localcluster import LocalCluster

CUSTOMERS = 64
POLICY = "\n".join(
    [
        "version: 1",
        "currency: USD",
        "features:",
        "  requests: {type: metered, unit: request}",
        "plans:",
        "  big: {entitlements: {requests: {limit: 100000000, period: day, enforcement: hard}}}",
        "customers:",
        *(f"  c{i}: {{plan: big}}" for i in range(CUSTOMERS)),
    ]
)


async def _round(engine: DecisionEngine, decisions: int, concurrency: int) -> tuple[float, ...]:
    latencies: list[float] = []
    todo = iter(range(decisions))

    async def worker() -> None:
        for i in todo:
            request = DecisionRequest(f"c{i % CUSTOMERS}", meters=(MeterRequest("requests", 1),))
            t0 = time.perf_counter()
            decision = await engine.decide(request)
            latencies.append(time.perf_counter() - t0)
            assert decision.allowed, decision

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    took = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return decisions / took, q[49] * 1e3, q[98] * 1e3


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cluster = LocalCluster()
    await asyncio.to_thread(cluster.start)
    try:
        print("concurrency  WAIT  decisions/s  p50 ms  p99 ms  (median of rounds)")
        for concurrency in args.concurrency:
            results: dict[int, list[tuple[float, ...]]] = {0: [], 1: []}
            for _ in range(args.rounds):
                for replicas in (0, 1):
                    text = f"{POLICY}\nsettings: {{redis: {{wait_replicas: {replicas}}}}}\n"
                    prefix = f"gkwait-{uuid.uuid4().hex[:6]}"
                    async with running_app(text, cluster.seeds, prefix, cluster=True) as engine:
                        await _round(engine, 200, concurrency)  # warm: customers, scripts
                        results[replicas].append(await _round(engine, args.decisions, concurrency))
            for replicas, rows in results.items():
                rate, p50, p99 = (statistics.median(col) for col in zip(*rows, strict=True))
                print(f"{concurrency:>11}  {replicas or 'off':>4}  {rate:>11,.0f}  "
                      f"{p50:>6.2f}  {p99:>6.2f}")  # fmt: skip
    finally:
        await asyncio.to_thread(cluster.stop)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
