"""Cluster: decisions/s and Redis CPU per decision on a Redis Cluster of 1 and of 3 primaries,
and how 10,000 customers' keys spread over the primaries.

What is measured, exactly:
- Two local clusters (store/localcluster.py, the embedded redis-server), started one after
  the other in the same run: 1 primary (all 16384 slots), then 3 primaries (equal slot
  ranges), no replicas (a replica's feed would add to each primary's CPU alike). Both are
  Clusters, so the client path is the same: the engine's cluster auto-pipeline.
- The control-plane scenario's directory (directory_load.py: one plan, a hard daily quota out
  of reach, so every decision is admitted and is one Lua call) with `customers` customers;
  a warm-up decides once for each (cache filled, counters created), then `tasks` concurrent
  engine.decide() calls in this one process, each for a customer drawn at random, for
  `seconds`. Every warm-up decision must be admitted (else the run fails).
- Redis CPU per decision: each primary's `used_cpu_sys + used_cpu_user` (INFO CPU) over the
  timed run, divided by the decisions routed to it (each customer's slot owner is known); the
  1-primary figure is the baseline. Busy share = that CPU / the run's wall time.
- Spread: the customers per primary (partition = CRC-32(id) mod partitions, partition = one
  slot), max/min, at the configured partition count and at 1024 for comparison.

The load generator is one Python process on the same cores: with 1 primary far from busy, 3
primaries cannot raise decisions/s here; what they show is the work each primary keeps.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.crc import key_slot

from gatekeeper.benchmark.directory_load import catalog_text, customer_id, populate
from gatekeeper.benchmark.inprocess import load, running_app
from gatekeeper.benchmark.model import Figure, percentiles_ms, progress
from gatekeeper.engine import DecisionEngine, DecisionRequest, MeterRequest
from gatekeeper.settings import RedisSettings
from gatekeeper.store.connection import connect_redis
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.localcluster import LocalCluster

__all__ = ["ClusterProfile", "run_cluster", "spread"]

SCENARIO = "cluster"
COMPARE_PARTITIONS = 1024


@dataclass(frozen=True, slots=True)
class ClusterProfile:
    seconds: float
    customers: int = 10_000
    tasks: int = 64
    primaries: tuple[int, ...] = (1, 3)


@dataclass(frozen=True, slots=True)
class _Run:
    primaries: int
    rate: float
    latencies_ns: list[int]
    per_primary: list[tuple[int, float]]  # (decisions, CPU seconds), one per primary
    seconds: float


def spread(keys: KeySpace, owners: dict[int, int], customers: int) -> Counter[int]:
    """Customers per primary port: customer c<i> -> partition -> slot -> owner."""
    slot_of = [key_slot(keys.usage_stream(p).encode()) for p in range(keys.partitions)]
    return Counter(owners[slot_of[keys.partition(customer_id(i))]] for i in range(customers))


async def _cpu(ports: Sequence[int]) -> list[float]:
    out = []
    for port in ports:
        client = Redis(host="127.0.0.1", port=port)
        try:
            info = await client.info("cpu")
        finally:
            await client.aclose()
        out.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return out


def _request(customer: str) -> DecisionRequest:
    return DecisionRequest(customer, meters=(MeterRequest("requests", 1),))


async def _drive(
    engine: DecisionEngine, owner_index: list[int], n_primaries: int, profile: ClusterProfile
) -> tuple[float, list[int], list[int]]:
    rng = random.Random(profile.customers)
    counts = [0] * n_primaries
    latencies: list[int] = []
    stop_at = time.perf_counter() + profile.seconds

    async def one() -> None:
        while time.perf_counter() < stop_at:
            i = rng.randrange(profile.customers)
            t0 = time.perf_counter_ns()
            decision = await engine.decide(_request(customer_id(i)))
            latencies.append(time.perf_counter_ns() - t0)
            if not decision.allowed:  # a store error or a lost customer: the figure is void
                raise RuntimeError(f"bench customer {customer_id(i)} refused: {decision.outcome}")
            counts[owner_index[i]] += 1

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(profile.tasks)))
    return time.perf_counter() - start, latencies, counts


async def _one_cluster(primaries: int, prefix: str, profile: ClusterProfile) -> _Run:
    progress(f"cluster: {primaries} primar{'y' if primaries == 1 else 'ies'}")
    cluster = LocalCluster(primaries=primaries, replicas_per_primary=0)
    await asyncio.to_thread(cluster.start)
    try:
        text = catalog_text()
        base = load(text, cluster.seeds, prefix, cluster=True)
        keys = KeySpace(prefix=prefix, partitions=base.settings.redis.partitions)
        ports = cluster.primary_ports
        owners = await asyncio.to_thread(cluster.slot_owners)
        slot_of = [key_slot(keys.usage_stream(p).encode()) for p in range(keys.partitions)]
        owner_index = [
            ports.index(owners[slot_of[keys.partition(customer_id(i))]])
            for i in range(profile.customers)
        ]
        writer = connect_redis(cluster.seeds, RedisSettings(cluster=True, autopipeline=False))
        try:
            now = datetime.now(UTC).isoformat(timespec="seconds")
            await populate(writer, keys, profile.customers, updated_at=now)
        finally:
            await writer.aclose()
        async with running_app(text, cluster.seeds, prefix, cluster=True) as engine:
            # warm-up: every customer read into the directory cache and its counter created,
            # the script loaded on every primary, the connections open
            await _decide_each(engine, profile.customers, profile.tasks)
            before = await _cpu(ports)
            elapsed, latencies, counts = await _drive(engine, owner_index, primaries, profile)
            after = await _cpu(ports)
    finally:
        await asyncio.to_thread(cluster.stop)
    per_primary = [(counts[i], after[i] - before[i]) for i in range(primaries)]
    return _Run(primaries, len(latencies) / elapsed, latencies, per_primary, elapsed)


async def _decide_each(engine: DecisionEngine, customers: int, tasks: int) -> None:
    ids = iter(range(customers))

    async def one() -> None:
        for i in ids:
            decision = await engine.decide(_request(customer_id(i)))
            if not decision.allowed:
                raise RuntimeError(f"bench customer {customer_id(i)} refused: {decision.outcome}")

    await asyncio.gather(*(one() for _ in range(tasks)))


async def run_cluster(prefix: str, profile: ClusterProfile) -> list[Figure]:
    runs = [await _one_cluster(n, f"{prefix}-{n}", profile) for n in profile.primaries]
    figures: list[Figure] = []
    first = runs[0]
    first_name = f"decisions/s, {first.primaries} primary"
    first_cpu = sum(c for _, c in first.per_primary) / max(1, sum(d for d, _ in first.per_primary))
    for run in runs:
        label = f"{run.primaries} primar{'y' if run.primaries == 1 else 'ies'}"
        decisions = sum(d for d, _ in run.per_primary)
        cpu = sum(c for _, c in run.per_primary)
        p50, p99, p999 = percentiles_ms(run.latencies_ns)
        is_first = run is first
        figures.append(Figure(
            SCENARIO, f"decisions/s, {label}", run.rate, "decisions/s", p50, p99, p999,
            baseline=None if is_first else first_name,
            ratio=None if is_first else run.rate / first.rate,
            note=f"{profile.tasks} tasks in one process, random customer of "
                 f"{profile.customers:,}; no replicas",
        ))  # fmt: skip
        per_decision = cpu / max(1, decisions)
        shares = ", ".join(
            f"{100 * d / max(1, decisions):.0f} % of decisions at "
            f"{1e6 * c / max(1, d):.1f} µs, busy {100 * c / run.seconds:.0f} %"
            for d, c in run.per_primary
        )
        figures.append(Figure(
            SCENARIO, f"Redis CPU per decision, {label}", 1e6 * per_decision, "µs",
            baseline=None if is_first else f"Redis CPU per decision, {first.primaries} primary",
            ratio=None if is_first else per_decision / first_cpu if first_cpu else None,
            note=f"INFO CPU sys+user of every primary ÷ decisions; per primary: {shares}",
        ))  # fmt: skip
    figures += _spread_figures(profile, max(profile.primaries))
    return figures


def _spread_figures(profile: ClusterProfile, primaries: int) -> list[Figure]:
    """Customers per primary on an even 3-way slot split (computed, nothing started)."""
    bounds = [16384 * i // primaries for i in range(primaries + 1)]
    owners = {s: i for i in range(primaries) for s in range(bounds[i], bounds[i + 1])}
    figures = []
    for partitions in (RedisSettings().partitions, COMPARE_PARTITIONS):
        counts = spread(KeySpace(prefix="gk", partitions=partitions), owners, profile.customers)
        loads = [counts.get(i, 0) for i in range(primaries)]
        figures.append(Figure(
            SCENARIO, f"customers per primary, max/min, {partitions} partitions",
            max(loads) / max(1, min(loads)), "ratio",
            note=f"{profile.customers:,} customers over {primaries} primaries: "
                 + " / ".join(f"{n:,}" for n in loads),
        ))  # fmt: skip
    return figures
