"""Redis's and the engine's own CPU per decision, without Envoy or HTTP in the way: the engine
decides flat out against a private embedded Redis, and Redis's time per `decide.lua` call is
read from INFO commandstats (`usec_per_call` of EVALSHA), the process's from its CPU clock.

    .venv/bin/python bench/decide_cost.py [--decisions 20000] [--concurrency 32]

One customer, one request with two priced meters (a rate limit, a spend cap): every counter
kind a decision touches. Compare two trees by running this with each on PYTHONPATH,
interleaved (bench/README.md: "Lost replies: what the journal costs"). The host's own speed
drifts by ±20 % within minutes here: pair the runs, compare medians.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from gatekeeper.clock import SystemClock
from gatekeeper.config import parse_config
from gatekeeper.engine import DecisionEngine, DecisionRequest, MeterRequest, StaticPolicy
from gatekeeper.settings import RedisSettings
from gatekeeper.store import RedisDecisionStore
from gatekeeper.store.connection import connect_redis
from gatekeeper.store.embedded import EmbeddedRedis

POLICY = """
version: 1
currency: USD
features:
  requests: {type: metered, unit: request}
  tokens: {type: metered, unit: token}
prices:
  requests: {unit_price: "0.001"}
  tokens: {unit_price: "0.00001"}
plans:
  big:
    entitlements:
      requests: {limit: null, period: day}
      tokens: {limit: null, period: month}
    rate_limits:
      - {feature: requests, limit: 1000000000, per: second}
    spend_cap: {amount: "1000000", action: block}
customers:
  cust: {plan: big}
"""


async def main(decisions: int, concurrency: int) -> None:
    policy = parse_config(POLICY, env={}).policy
    with EmbeddedRedis() as server:
        client = connect_redis(server.url, RedisSettings())
        store = RedisDecisionStore(redis=client, settings=RedisSettings(key_prefix="cost"))
        engine = DecisionEngine(policy=StaticPolicy(policy), store=store, clock=SystemClock())
        request = DecisionRequest(
            "cust", meters=(MeterRequest("requests", 1), MeterRequest("tokens", 30))
        )
        for _ in range(500):  # warm: script loaded, template built
            assert (await engine.decide(request)).allowed
        await client.execute_command("CONFIG", "RESETSTAT")

        async def worker() -> None:
            for _ in range(decisions // concurrency):
                assert (await engine.decide(request)).allowed

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stats = (await client.info("commandstats"))["cmdstat_evalsha"]
        n = decisions // concurrency * concurrency
        print(
            f"decisions/s {n / wall:,.0f}  Redis µs per decide.lua {stats['usec_per_call']:.1f}"
            f"  engine µs of CPU per decision {cpu / n * 1e6:.1f}"
        )
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(sys.argv[1:])
    asyncio.run(main(args.decisions, args.concurrency))
