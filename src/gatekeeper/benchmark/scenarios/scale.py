"""Scale: decisions/s, Redis memory and local policy memory at 1, 10,000 and 1,000,000 customers.

What is measured, exactly:
- The policy: one plan whose only limit is a hard daily quota on `requests`, so each customer
  owns exactly one Redis counter (a hash) per period. N customers are generated in memory from
  the one customer the YAML declares (same objects the loader builds, one API key each; YAML
  parsing of a million customers is not what is measured). Local cache memory = the bytes
  tracemalloc sees allocated while building those customers and the Policy (its key index).
- Populate: the engine decides once for `c0` (warm-up), then once for every other customer
  (64 concurrent decisions), as serve would.
- decisions/s: `seconds` of decisions for customers drawn at random among the N.
- Redis memory: INFO used_memory before populating, after, and after deleting the usage
  streams; (after − before) / (N − 1) = bytes per customer-feature counter (N ≥ 1,000 only).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import tracemalloc
from dataclasses import dataclass, replace

from redis.asyncio import Redis

from gatekeeper.benchmark.inprocess import delete_prefix, load, running_app
from gatekeeper.benchmark.model import Figure, percentiles_ms
from gatekeeper.engine import DecisionEngine, DecisionRequest, MeterRequest
from gatekeeper.model import ApiKey, Customer, Policy, frozen_map
from gatekeeper.store.keys import KeySpace

__all__ = ["ScaleProfile", "run_scale"]

SCENARIO = "scale"
MEMORY_MIN_CUSTOMERS = 1000  # below, allocator noise is larger than what is measured
TEXT = """\
version: 1
currency: USD
features:
  requests: {type: metered, unit: request}
plans:
  basic:
    entitlements:
      requests: {limit: 1000000000, period: day, enforcement: hard}
customers:
  c0:
    plan: basic
    api_keys: [{id: c0, sha256: 0000000000000000000000000000000000000000000000000000000000000000}]
"""


@dataclass(frozen=True, slots=True)
class ScaleProfile:
    counts: tuple[int, ...]
    seconds: float
    tasks: int = 64


def _customers(template: Customer, n: int) -> dict[str, Customer]:
    out: dict[str, Customer] = {}
    for i in range(n):
        cid = f"c{i}"
        sha = hashlib.sha256(f"bench-{cid}".encode()).hexdigest()
        out[cid] = replace(template, id=cid, api_keys=(ApiKey(id=cid, sha256=sha),))
    return out


def build_policy(base: Policy, n: int) -> tuple[Policy, int]:
    """A policy of `n` customers like `c0`, and the bytes allocated to hold them."""
    template = base.customers["c0"]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        policy = replace(base, customers=frozen_map(_customers(template, n)))
        size = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return policy, size


async def _used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


def _request(customer: str) -> DecisionRequest:
    return DecisionRequest(customer, meters=(MeterRequest("requests", 1),))


async def _populate(engine: DecisionEngine, n: int, tasks: int) -> float:
    """One decision for each of c1..c(n-1) (c0 was the warm-up): decisions/s."""
    ids = iter(range(1, n))
    start = time.perf_counter()

    async def one() -> None:
        for i in ids:
            await engine.decide(_request(f"c{i}"))

    await asyncio.gather(*(one() for _ in range(tasks)))
    return (n - 1) / (time.perf_counter() - start)


async def _random_load(
    engine: DecisionEngine, n: int, tasks: int, seconds: float
) -> tuple[float, list[int]]:
    rng = random.Random(n)
    stop_at = time.perf_counter() + seconds
    latencies: list[int] = []

    async def one() -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter_ns()
            await engine.decide(_request(f"c{rng.randrange(n)}"))
            latencies.append(time.perf_counter_ns() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    return len(latencies) / (time.perf_counter() - start), latencies


async def run_scale(redis_url: str, prefix: str, profile: ScaleProfile) -> list[Figure]:
    base = load(TEXT, redis_url, prefix)
    keys = KeySpace(prefix=prefix, partitions=base.settings.redis.partitions)
    redis = Redis.from_url(redis_url)
    figures: list[Figure] = []
    first: Figure | None = None
    streams = [*keys.all_usage_streams(), *keys.all_alert_streams()]
    try:
        for n in profile.counts:
            policy, policy_bytes = build_policy(base.policy, n)
            await delete_prefix(redis_url, prefix)
            async with running_app(TEXT, redis_url, prefix, policy=policy) as engine:
                # warm-up: script loaded, every pooled connection open (their buffers count in
                # used_memory), c0's counter exists
                await asyncio.gather(*(engine.decide(_request("c0")) for _ in range(profile.tasks)))
                await redis.delete(*streams)
                before = await _used_memory(redis)
                populate_rate = await _populate(engine, n, profile.tasks)
                populated = await _used_memory(redis)
                rate, lat = await _random_load(engine, n, profile.tasks, profile.seconds)
            await redis.delete(*streams)
            counters = await _used_memory(redis)
            p50, p99, p999 = percentiles_ms(lat)
            fig = Figure(
                SCENARIO, f"decisions/s over {n:,} customers", rate, "decisions/s", p50, p99,
                p999, baseline=first.name if first else None,
                ratio=rate / first.value if first and first.value else None,
                note=f"{profile.tasks} tasks, random customer"
                + (f"; populating {populate_rate:,.0f}/s" if n > 1 else ""),
            )  # fmt: skip
            first = first or fig
            figures.append(fig)
            if n >= MEMORY_MIN_CUSTOMERS:
                figures.append(Figure(
                    SCENARIO, f"Redis bytes per counter, {n:,} customers",
                    (counters - before) / (n - 1), "bytes/counter",
                    note=(f"used_memory +{(populated - before) / 1e6:,.1f} MB with usage events, "
                          f"+{(counters - before) / 1e6:,.1f} MB counters only; "
                          "1 counter per customer"),
                ))  # fmt: skip
            figures.append(Figure(
                SCENARIO, f"policy cache in process, {n:,} customers", policy_bytes / n,
                "bytes/customer", note=f"{policy_bytes / 1e6:,.1f} MB (tracemalloc)",
            ))  # fmt: skip
            del policy
    finally:
        await delete_prefix(redis_url, prefix)
        await redis.aclose()
    return figures
