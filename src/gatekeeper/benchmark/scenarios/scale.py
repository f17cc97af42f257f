"""Scale: decisions/s, Redis memory per counter and per directory record at 1, 10,000 and
1,000,000 customers.

What is measured, exactly:
- The policy: one plan whose only limit is a hard daily quota on `requests`, so each customer
  owns exactly one Redis counter (a hash) per period. N customers are written into the
  directory (`CustomerRecords.put_many`, one API key each, as `gatekeeper import` would), and
  a real App serves them: each decision finds its customer through the directory cache, as
  serve does (the first decision of a customer reads its record).
- Populate: the engine decides once for `c0` (warm-up), then once for every other customer
  (64 concurrent decisions). Every decision must be admitted (an unknown customer, say, would
  make the figures meaningless): the scenario fails otherwise.
- decisions/s: `seconds` of decisions for customers drawn at random among the N.
- Redis memory: INFO used_memory before writing the directory, after it (bytes per record:
  record, key pointer, indexes), after populating, and after deleting the usage streams;
  (after − populated directory) / (N − 1) = bytes per customer-feature counter (N ≥ 1,000).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from gatekeeper.benchmark.directory_load import catalog_text, customer_id, populate
from gatekeeper.benchmark.inprocess import delete_prefix, load, running_app
from gatekeeper.benchmark.model import Figure, percentiles_ms
from gatekeeper.benchmark.processes import BenchSetupError
from gatekeeper.engine import Decision, DecisionEngine, DecisionRequest, MeterRequest
from gatekeeper.store.keys import KeySpace

__all__ = ["ScaleProfile", "run_scale"]

SCENARIO = "scale"
MEMORY_MIN_CUSTOMERS = 1000  # below, allocator noise is larger than what is measured
TEXT = catalog_text()  # one plan ("basic"): a hard daily quota on `requests`; no customers


@dataclass(frozen=True, slots=True)
class ScaleProfile:
    counts: tuple[int, ...]
    seconds: float
    tasks: int = 64


async def _used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


def _request(customer: str) -> DecisionRequest:
    return DecisionRequest(customer, meters=(MeterRequest("requests", 1),))


def _admitted(decision: Decision) -> None:
    if not decision.allowed:
        raise BenchSetupError(
            f"scale: a decision for {decision.customer_id} was {decision.outcome.value}, not "
            "admitted: the figures would not measure admissions"
        )


async def _populate(engine: DecisionEngine, n: int, tasks: int) -> float:
    """One decision for each of c1..c(n-1) (c0 was the warm-up): decisions/s."""
    ids = iter(range(1, n))
    start = time.perf_counter()

    async def one() -> None:
        for i in ids:
            _admitted(await engine.decide(_request(customer_id(i))))

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
            decision = await engine.decide(_request(customer_id(rng.randrange(n))))
            latencies.append(time.perf_counter_ns() - t0)
            _admitted(decision)

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
            await delete_prefix(redis_url, prefix)
            empty = await _used_memory(redis)
            written = await populate(redis, keys, n, updated_at=datetime.now(UTC).isoformat())
            if written != n:
                raise BenchSetupError(f"scale: {written:,} of {n:,} customers written")
            record_bytes = (await _used_memory(redis) - empty) / n
            async with running_app(TEXT, redis_url, prefix) as engine:
                # warm-up: script loaded, every pooled connection open (their buffers count in
                # used_memory), c0's counter exists
                warm = [engine.decide(_request(customer_id(0))) for _ in range(profile.tasks)]
                for decision in await asyncio.gather(*warm):
                    _admitted(decision)
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
            if n >= MEMORY_MIN_CUSTOMERS:
                figures.append(Figure(
                    SCENARIO, f"Redis bytes per directory record, {n:,} customers", record_bytes,
                    "bytes/customer", note="record, key pointer, indexes (a process holds at "
                    "most directory.cache_size of them: see control-plane)",
                ))  # fmt: skip
    finally:
        await delete_prefix(redis_url, prefix)
        await redis.aclose()
    return figures
