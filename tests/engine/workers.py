"""Code that runs in child OS processes for the concurrency tests (importable by spawn)."""

from __future__ import annotations

import asyncio
import dataclasses
import random

from gatekeeper.engine import Decision, DecisionRequest, MeterRequest
from gatekeeper.model import Enforcement, Policy, frozen_map
from gatekeeper.settings import RedisSettings
from gatekeeper.store.connection import connect_redis
from tests.engine.harness import make_harness
from tests.engine.policies import cap, flat, metered, plan, policy

SPEND_CAP_NANO = 10_000_000_000  # 10.00 USD
PRICES = (flat("requests", 70_000_000), flat("images", 130_000_000), flat("tokens", 3_000))


def scenario(name: str) -> Policy:
    if name == "hard100":
        return policy(plan("p", metered("requests", 100)))
    if name == "many":
        one = policy(plan("p", metered("requests", 100)))
        template = one.customers["cust"]
        customers = {c: dataclasses.replace(template, id=c) for c in MANY}
        return dataclasses.replace(one, customers=frozen_map(customers))
    if name == "thresholds":
        return policy(plan("p", metered("requests", 400, thresholds=(50, 80, 100))))
    if name == "soft_thresholds":
        p = plan(
            "p", metered("requests", 400, enforcement=Enforcement.SOFT, thresholds=(50, 80, 100))
        )
        return policy(p)
    if name == "spend":
        p = plan(
            "p",
            metered("requests", None),
            metered("images", None),
            metered("tokens", None),
            spend_cap=cap(SPEND_CAP_NANO),
        )
        return policy(p, prices=PRICES)
    raise ValueError(name)


# customers of the "many" scenario: one hard limit of 100 each, on every primary of a Cluster
MANY = tuple(f"cust-{i}" for i in range(12))


def _request(name: str, rng: random.Random, i: int = 0) -> DecisionRequest:
    if name == "many":
        return DecisionRequest(MANY[i % len(MANY)], meters=(MeterRequest("requests", 1),))
    if name != "spend":
        return DecisionRequest("cust", meters=(MeterRequest("requests", 1),))
    meters = [MeterRequest("requests", 1)]
    if rng.random() < 0.5:
        meters.append(MeterRequest("images", rng.randint(1, 3)))
    if rng.random() < 0.7:
        meters.append(MeterRequest("tokens", rng.randint(1, 5_000)))
    return DecisionRequest("cust", meters=tuple(meters))


async def _run(
    url: str, prefix: str, name: str, n: int, seed: int, autopipeline: bool, cluster: bool
) -> list[tuple[bool, int]]:
    # redis-py's cluster pool fails at max_connections instead of waiting for a free
    # connection (pool_timeout_s does not apply there): room for every call at once
    connections = n + 8 if cluster and not autopipeline else 32
    settings = RedisSettings(
        max_connections=connections, pool_timeout_s=30, autopipeline=autopipeline, cluster=cluster
    )
    client = connect_redis(url, settings)
    try:
        h = make_harness(client, scenario(name), prefix)
        rng = random.Random(seed)
        requests = [_request(name, rng, i) for i in range(n)]
        decisions: list[Decision] = await asyncio.gather(*(h.engine.decide(r) for r in requests))
        return [(d.allowed, d.cost_nano) for d in decisions]
    finally:
        await client.aclose()


def run_batch(
    url: str,
    prefix: str,
    name: str,
    n: int,
    seed: int,
    autopipeline: bool = True,
    cluster: bool = False,
) -> list[tuple[bool, int]]:
    """n concurrent decisions in this process; returns (admitted, cost) per decision. `url`
    lists seed nodes when `cluster`."""
    return asyncio.run(_run(url, prefix, name, n, seed, autopipeline, cluster))
