"""Thresholds crossed by 1,000 concurrent decisions through the real engine reach a local
receiver as exactly one signed webhook each, verified by the `standardwebhooks` reference
verifier and by gatekeeper's own; latency from the decision to arrival is measured."""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from gatekeeper.clock import SystemClock
from gatekeeper.notify import GROUP, generate_secret, verify
from gatekeeper.store.keys import KeySpace
from tests.conftest import RedisTarget
from tests.engine.harness import make_harness
from tests.notify.helpers import customers_policy, endpoint, make_notifier, req
from tests.notify.receiver import WebhookReceiver
from tests.notify.workers import run_decisions

NAMES = [f"cust-{i:02d}" for i in range(20)]  # 20 customers x limit 50 = 1,000 requests
THRESHOLDS = (50, 80, 100)


def _fan_out(url: str, prefix: str, processes: int) -> list[bool]:
    per = 50 // processes
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        futures = [pool.submit(run_decisions, url, prefix, NAMES, per) for _ in range(processes)]
        return [ok for f in futures for ok in f.result(timeout=120)]


async def _check(rx: WebhookReceiver, secret: str, redis: Redis, prefix: str) -> None:
    await asyncio.wait_for(rx.wait_for(len(NAMES) * len(THRESHOLDS)), 30)
    committed: dict[str, float] = {}  # alert id -> XADD time (the entry id's milliseconds)
    for stream in KeySpace(prefix=prefix).all_alert_streams():
        for entry_id, fields in await redis.xrange(stream):
            committed[fields[b"id"].decode()] = int(entry_id.split(b"-")[0]) / 1000
    seen = []
    latencies = []
    from_commit = []
    for arrival in rx.requests:
        body = arrival.json()
        verify(arrival.headers, arrival.body, [secret], now=arrival.at_wall)
        assert arrival.webhook_id == body["id"]
        assert body["type"] == "gatekeeper.alert.threshold" and body["version"] == 1
        seen.append((body["customer"], body["threshold"]))
        occurred = datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00"))
        latencies.append(arrival.at_wall - occurred.timestamp())
        from_commit.append(arrival.at_wall - committed[body["id"]])
    assert rx.rejected == []  # the reference verifier accepted every one
    assert sorted(seen) == sorted((c, t) for c in NAMES for t in THRESHOLDS)
    assert all(n == 1 for n in rx.arrivals.values()) and len(rx.requests) == len(seen)
    # The crossing is the script's commit; from there delivery is the notifier's own doing.
    # "Decision start" also holds the time a decision queued behind 999 others for one of the
    # test client's 32 connections, so it is held to the looser bound issue 24 names (2 s p99
    # of the crossing request).
    assert _report("script commit (stream entry id)", from_commit) < 1.0
    assert _report("decision start", latencies) < 2.0


def _report(since: str, values: list[float]) -> float:
    values = sorted(values)
    p50 = statistics.median(values)
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    print(
        f"\nwebhook latency {since} -> receiver, {len(values)} alerts: p50 {p50 * 1000:.1f} ms,"
        f" p99 {p99 * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms"
    )
    return p99


async def _run(redis: Redis, prefix: str, decide) -> None:  # type: ignore[no-untyped-def]
    secret = generate_secret()
    rx = await WebhookReceiver([secret]).start()
    notifier = make_notifier(
        redis, prefix, [endpoint(rx.url, secret)], clock=SystemClock(), max_in_flight=8
    )
    task = asyncio.create_task(notifier.run())
    try:
        allowed = await decide()
        assert len(allowed) == 1_000 and all(allowed)
        await _check(rx, secret, redis, prefix)
        notifier.stop()
        await asyncio.wait_for(task, 10)
        assert notifier.delivered == len(rx.requests) and notifier.backlog == 0
        for stream in KeySpace(prefix=prefix).all_alert_streams():
            if await redis.exists(stream):
                assert (await redis.xpending(stream, GROUP))["pending"] == 0
        again = make_notifier(redis, prefix, [endpoint(rx.url, secret)], clock=SystemClock())
        await again.drain()  # a restarted notifier finds nothing left to send
        await again.aclose()
        assert len(rx.requests) == len(NAMES) * len(THRESHOLDS)
    finally:
        notifier.stop()
        await asyncio.wait_for(task, 10)
        await rx.stop()


async def test_one_thousand_concurrent_decisions_in_process(
    redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> None:
    async def decide() -> list[bool]:
        pool = BlockingConnectionPool.from_url(redis_target.url, max_connections=32, timeout=30)
        client = Redis(connection_pool=pool)
        try:
            clock = SystemClock()  # an alert's time is when its decision ran
            h = make_harness(client, customers_policy(NAMES), key_prefix, clock=clock)  # type: ignore[arg-type]
            requests = [req(n) for _ in range(50) for n in NAMES]
            decisions = await asyncio.gather(*(h.engine.decide(r) for r in requests))
            return [d.allowed for d in decisions]
        finally:
            await client.aclose()

    async with asyncio.timeout(60):
        await _run(redis, key_prefix, decide)


@pytest.mark.slow
async def test_one_thousand_concurrent_decisions_in_two_processes(
    redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> None:
    async def decide() -> list[bool]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _fan_out, redis_target.url, key_prefix, 2)

    async with asyncio.timeout(120):
        await _run(redis, key_prefix, decide)
