"""Decisions in child OS processes (spawn) for the notifier's end-to-end test."""

from __future__ import annotations

import asyncio

from redis.asyncio import BlockingConnectionPool, Redis

from gatekeeper.clock import SystemClock
from tests.engine.harness import make_harness
from tests.notify.helpers import customers_policy, req


async def _run(url: str, prefix: str, names: list[str], per_customer: int) -> list[bool]:
    client = Redis(
        connection_pool=BlockingConnectionPool.from_url(url, max_connections=32, timeout=30)
    )
    try:
        # the real clock: an alert's time is then when its decision ran (latency measured)
        h = make_harness(client, customers_policy(names), prefix, clock=SystemClock())  # type: ignore[arg-type]
        requests = [req(n) for _ in range(per_customer) for n in names]
        decisions = await asyncio.gather(*(h.engine.decide(r) for r in requests))
        return [d.allowed for d in decisions]
    finally:
        await client.aclose()


def run_decisions(url: str, prefix: str, names: list[str], per_customer: int) -> list[bool]:
    """`per_customer` concurrent one-unit decisions for each customer, in this process."""
    return asyncio.run(_run(url, prefix, names, per_customer))
