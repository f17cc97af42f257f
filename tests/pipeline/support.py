"""Shared test material: a priced policy (YAML, so a subprocess worker reads the same one), an
engine over the test Redis, and a workload of mixed decisions (some denied)."""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from gatekeeper.billing import BilledEvent, BillingCalendar, BillingStore
from gatekeeper.clock import ManualClock
from gatekeeper.config import parse_config
from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.events import UsageEvent
from gatekeeper.model import Policy
from gatekeeper.pipeline import BillingWorker, WorkerOptions
from gatekeeper.store.keys import KeySpace
from tests.conftest import RedisTarget
from tests.engine.harness import START, Harness, make_harness

PARTITIONS = 4

POLICY_YAML = """
version: 1
currency: USD
features:
  api_access: {type: boolean}
  requests: {type: metered, unit: request}
  tokens: {type: metered, unit: token}
  images: {type: metered, unit: image}
prices:
  requests: {unit_price: "0.004"}
  tokens:
    per: 1000
    tiers:
      - {up_to: 50000, unit_price: "0.002"}
      - {up_to: null, unit_price: "0.001"}
  images: {unit_price: "0.015"}
plans:
  std:
    entitlements:
      api_access: true
      requests: {limit: 100000000, period: month, anchor: billing_day}
      tokens: {limit: 1000000000, period: month, anchor: billing_day, enforcement: soft}
      images: {limit: 40, period: day}
customers:
  alpha: {plan: std, billing_day: 15}
  beta: {plan: std}
  gamma: {plan: std, billing_day: 31}
  epsilon: {plan: std}
"""
# with PARTITIONS = 4 their partitions (2, 3, 1, 0) sit on all three primaries of the test
# cluster (tests/pipeline/test_worker.py checks it)
CUSTOMERS = ("alpha", "beta", "gamma", "epsilon")


def test_policy() -> Policy:
    return parse_config(POLICY_YAML, source="<test policy>").policy


def worker_env(redis_target: RedisTarget, key_prefix: str, policy: Path) -> dict[str, str]:
    """The environment of a `gatekeeper worker` subprocess on this test's Redis and keys (no
    GATEKEEPER_* of the caller's shell leaks in); add the billing DSN and the rest per test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
    return env | {
        "GATEKEEPER_CONFIG": str(policy),
        "GATEKEEPER_REDIS_URL": redis_target.url,
        "GATEKEEPER_REDIS_CLUSTER": "true" if redis_target.cluster else "false",
        "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix,
        "GATEKEEPER_REDIS_PARTITIONS": str(PARTITIONS),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
    }


def write_policy(directory: Path) -> Path:
    path = directory / "policy.yaml"
    path.write_text(POLICY_YAML, encoding="utf-8")
    return path


def harness(redis: Redis, prefix: str, clock: ManualClock | None = None) -> Harness:
    return make_harness(redis, test_policy(), prefix, clock=clock, partitions=PARTITIONS)


def keyspace(prefix: str) -> KeySpace:
    return KeySpace(prefix=prefix, partitions=PARTITIONS)


def make_worker(
    redis: Redis, store: BillingStore, prefix: str, clock: ManualClock | None = None,
    **options: int | float | str,
) -> BillingWorker:  # fmt: skip
    policy = test_policy()
    opts = {"batch": 500, "block_ms": 50, "min_idle_ms": 60_000, "trim_interval_s": 0} | options
    return BillingWorker(
        redis=redis, store=store, keys=keyspace(prefix), calendar=BillingCalendar.of(policy),
        clock=clock or ManualClock(START), options=WorkerOptions(**opts),  # type: ignore[arg-type]
    )  # fmt: skip


@dataclass
class Workload:
    decisions: int = 0
    admitted: int = 0
    denied: int = 0
    cost_nano: int = 0
    cost_by_customer: dict[str, int] = field(default_factory=dict)


def request(rng: random.Random, customer: str) -> DecisionRequest:
    kind = rng.random()
    if kind < 0.5:
        meters = (MeterRequest("requests", 1), MeterRequest("tokens", rng.randint(1, 4000)))
    elif kind < 0.8:
        meters = (MeterRequest("requests", 1),)
    else:
        meters = (MeterRequest("requests", 1), MeterRequest("images", 1))
    return DecisionRequest(customer, requires=("api_access",), meters=meters)


async def run_decisions(
    h: Harness, n: int, *, seed: int = 7, concurrency: int = 100, step: timedelta | None = None,
    total: Workload | None = None,
) -> Workload:  # fmt: skip
    """n decisions over the three customers; the clock moves by `step` between waves."""
    rng = random.Random(seed)
    w = total or Workload()
    done = 0
    while done < n:
        wave = min(concurrency, n - done)
        reqs = [request(rng, rng.choice(CUSTOMERS)) for _ in range(wave)]
        for d in await asyncio.gather(*(h.engine.decide(r) for r in reqs)):
            w.decisions += 1
            if d.allowed:
                w.admitted += 1
                w.cost_nano += d.cost_nano
                w.cost_by_customer[d.customer_id] = (
                    w.cost_by_customer.get(d.customer_id, 0) + d.cost_nano
                )
            else:
                w.denied += 1
        done += wave
        if step is not None:
            h.clock.advance(step)
    return w


async def stream_event_ids(redis: Redis, prefix: str) -> list[str]:
    """Event ids of every entry in the usage streams (duplicates included)."""
    ids = []
    for stream in keyspace(prefix).all_usage_streams():
        for _, fields in await redis.xrange(stream):
            ids.append(fields[b"id"].decode())
    return ids


async def billed_events(redis: Redis, prefix: str) -> list[BilledEvent]:
    """Every usage stream entry parsed and given its billing period (what the sink does)."""
    policy = test_policy()
    calendar = BillingCalendar.of(policy)
    out = []
    for stream in keyspace(prefix).all_usage_streams():
        for entry_id, fields in await redis.xrange(stream):
            out.append(calendar.bill(UsageEvent.from_fields(fields), entry_id.decode()))
    return out


async def all_stored_ids(store: BillingStore, when: datetime = START) -> list[str]:
    """Ids of the events invoiced in each customer's period containing `when`."""
    policy = test_policy()
    calendar = BillingCalendar.of(policy)
    ids: list[str] = []
    for c in CUSTOMERS:
        start = calendar.window(c, when).start.date()
        ids.extend(e.event.id for e in await store.invoice_events(c, start))
    return ids
