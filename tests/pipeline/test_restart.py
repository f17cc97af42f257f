"""Worker restarts hand over at once (issue 24): a real `gatekeeper worker` process is stopped
(SIGTERM) or killed (SIGKILL) while it holds entries, and the next one takes them over through
the consumer heartbeats (store/consumers.py) instead of waiting for the idle time of reclaim
(notifier 300 s, billing 30 s by default).

- A webhook waiting for its retry (the receiver failed the first attempt, Retry-After 60 s)
  arrives within 2 s of the restarted worker being ready, exactly once.
- SIGKILL: taken over once the killed worker's heartbeat expired (TTL 3 s) plus one check
  (1 s), never before it expired.
- Billing: usage entries pending at a killed worker are billed by the next one within seconds
  (the reclaim idle time is left at 30 s), each once; billed totals equal the admitted costs.

Bounded in time; every child process is killed in `finally`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gatekeeper.billing import BillingCalendar, BillingStore
from gatekeeper.config import load_config
from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.notify import GROUP as NOTIFIER_GROUP
from gatekeeper.notify import generate_secret
from gatekeeper.pipeline.commands import WORKER_READY
from gatekeeper.store.consumers import Liveness
from gatekeeper.store.keys import KeySpace
from tests.billing.stores import StoreTarget
from tests.conftest import RedisTarget, redis_target_of, redis_targets
from tests.engine.harness import make_harness
from tests.notify.receiver import WebhookReceiver
from tests.pipeline import support
from tests.pipeline.support import (
    CUSTOMERS,
    PARTITIONS,
    POLICY_YAML,
    Workload,
    all_stored_ids,
    harness,
    run_decisions,
    stream_event_ids,
    worker_env,
    write_policy,
)
from tests.pipeline.test_worker import outstanding, pending

LIVE = Liveness()  # the worker's defaults: TTL 3 s, beat 1 s, check 1 s
DEADLINE_S = 60


@pytest.fixture(params=redis_targets(cluster=True))
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    return redis_target_of(request, request.param)


class Workers:
    """`gatekeeper worker` processes sharing one log; each start waits for its ready line."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.procs = env, log, []  # type: list[subprocess.Popen[bytes]]

    async def start(self, consumer: str, *extra: str) -> float:
        """Start one; returns the perf_counter() time its ready line appeared."""
        seen = self.log.read_text().count(WORKER_READY) if self.log.exists() else 0
        args = [sys.executable, "-m", "gatekeeper", "worker", "--consumer", consumer,
                "--block-ms", "100", "--trim-interval", "0", *extra]  # fmt: skip
        with self.log.open("ab") as out:
            self.procs.append(
                subprocess.Popen(args, env=self.env, stdout=out, stderr=out, start_new_session=True)
            )
        deadline = time.monotonic() + 30
        while self.log.read_text().count(WORKER_READY) <= seen:
            assert self.procs[-1].poll() is None, self.tail()
            assert time.monotonic() < deadline, self.tail()
            await asyncio.sleep(0.01)
        return time.perf_counter()

    def tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


async def _alert_waiting_for_retry(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path
) -> tuple[Workers, WebhookReceiver]:
    """A worker whose one webhook failed its first attempt (503, Retry-After 60 s): the alert
    entry is pending at consumer w-a, the retry a minute away."""
    secret = generate_secret()
    rx = await WebhookReceiver([secret], statuses=[503], retry_after="60").start()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        POLICY_YAML.replace(
            "images: {limit: 40, period: day}",
            "images: {limit: 40, period: day, alert_thresholds: [50]}",
        )
        + f"""settings:
  alerts:
    webhooks:
      - {{url: "{rx.url}", secret_env: TEST_WEBHOOK_SECRET, kinds: [threshold]}}
"""
    )
    env = worker_env(redis_target, key_prefix, policy) | {"TEST_WEBHOOK_SECRET": secret}
    env["GATEKEEPER_BILLING_DSN"] = f"sqlite:///{tmp_path / 'billing.sqlite'}"
    workers = Workers(env, tmp_path / "worker.log")
    await workers.start("w-a")
    loaded = load_config(policy, env={})
    h = make_harness(redis, loaded.policy, key_prefix, partitions=PARTITIONS)
    request = DecisionRequest("beta", meters=(MeterRequest("images", 1),))
    for _ in range(25):  # 50 % of 40 crossed at the 20th: one alert
        assert (await h.engine.decide(request)).allowed
    deadline = time.monotonic() + DEADLINE_S
    while not rx.requests:  # the first attempt, refused
        assert time.monotonic() < deadline, workers.tail()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # the refusal applied: the retry scheduled a minute away
    assert rx.accepted == {} and await _notifier_pending(redis, key_prefix) == {"w-a": 1}
    return workers, rx


async def _notifier_pending(redis: Redis, prefix: str) -> dict[str, int]:
    held: dict[str, int] = {}
    for stream in KeySpace(prefix=prefix, partitions=PARTITIONS).all_alert_streams():
        if await redis.exists(stream):
            for row in await redis.xinfo_consumers(stream, NOTIFIER_GROUP):
                if int(row["pending"]):
                    name = row["name"].decode()
                    held[name] = held.get(name, 0) + int(row["pending"])
    return held


async def _delivered(rx: WebhookReceiver, workers: Workers) -> float:
    deadline = time.monotonic() + DEADLINE_S
    while not rx.accepted:
        assert time.monotonic() < deadline, workers.tail()
        await asyncio.sleep(0.005)
    return next(iter(rx.accepted.values())).at_perf


async def _exactly_once_then_stop(
    rx: WebhookReceiver, workers: Workers, redis: Redis, prefix: str
) -> None:
    await asyncio.sleep(1.0)  # nothing more arrives
    assert len(rx.accepted) == 1 and list(rx.arrivals.values()) == [1], workers.tail()
    assert len(rx.requests) == 2 and not rx.rejected  # the refused attempt, one delivery
    workers.procs[-1].send_signal(signal.SIGTERM)
    assert workers.procs[-1].wait(15) == 0, workers.tail()
    assert await _notifier_pending(redis, prefix) == {}


async def test_sigterm_while_a_webhook_waits_for_retry_then_restart_delivers_at_once(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path
) -> None:
    workers, rx = await _alert_waiting_for_retry(redis, redis_target, key_prefix, tmp_path)
    try:
        stopped_at = time.perf_counter()
        workers.procs[0].send_signal(signal.SIGTERM)
        assert workers.procs[0].wait(15) == 0, workers.tail()
        spawned = time.perf_counter()
        ready = await workers.start("w-b")
        arrived = await _delivered(rx, workers)
        print(
            f"\nSIGTERM restart ({redis_target.name}): stop -> delivery "
            f"{arrived - stopped_at:.3f} s, spawn -> delivery {arrived - spawned:.3f} s, "
            f"ready -> delivery {(arrived - ready) * 1000:.0f} ms"
        )
        assert arrived - ready < 2.0, workers.tail()
        assert "took over 1 entries of dead consumer w-a" in workers.tail()
        await _exactly_once_then_stop(rx, workers, redis, key_prefix)
    finally:
        workers.stop_all()
        await rx.stop()


async def test_sigkill_while_a_webhook_waits_for_retry_is_taken_over_after_the_heartbeat(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path
) -> None:
    workers, rx = await _alert_waiting_for_retry(redis, redis_target, key_prefix, tmp_path)
    beat = KeySpace(prefix=key_prefix).consumer_heartbeat(NOTIFIER_GROUP, "w-a")
    try:
        os.killpg(workers.procs[0].pid, signal.SIGKILL)
        killed = time.perf_counter()
        workers.procs[0].wait(5)
        left_ms = await redis.pttl(beat)
        assert 0 < left_ms <= LIVE.ttl_ms  # still "alive" for a moment
        expires = killed + left_ms / 1000
        ready = await workers.start("w-b")
        arrived = await _delivered(rx, workers)
        print(
            f"\nSIGKILL restart ({redis_target.name}): kill -> delivery {arrived - killed:.3f} s "
            f"(heartbeat expired {left_ms / 1000:.3f} s after the kill, worker ready "
            f"{ready - killed:.3f} s after it)"
        )
        assert arrived >= expires - 0.05  # a live-looking consumer's entries are not taken
        bound = max(expires, ready) + LIVE.check_interval_s + 1.0  # + a loaded machine
        assert arrived <= bound, workers.tail()
        await _exactly_once_then_stop(rx, workers, redis, key_prefix)
    finally:
        workers.stop_all()
        await rx.stop()


async def test_usage_pending_at_a_killed_worker_is_billed_by_the_next_at_once_and_once(
    store_target: StoreTarget,
    store: BillingStore,
    redis: Redis,
    redis_target: RedisTarget,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    env = worker_env(redis_target, key_prefix, write_policy(tmp_path))
    env["GATEKEEPER_BILLING_DSN"] = store_target.dsn
    workers = Workers(env, tmp_path / "worker.log")
    h = harness(redis, key_prefix)
    work = Workload()
    t0 = time.monotonic()
    try:
        # --min-idle-ms stays at its 30 s default: only the take-over can be this quick
        await workers.start("w-a", "--batch", "150")
        for wave in range(4):
            await run_decisions(h, 150, seed=wave, concurrency=50, total=work)
        pid = workers.procs[0].pid
        while True:  # frozen mid-batch (read, not yet acknowledged): it cannot ack before the kill
            os.killpg(pid, signal.SIGSTOP)
            if await pending(redis, key_prefix):
                break
            os.killpg(pid, signal.SIGCONT)
            await run_decisions(h, 150, seed=100 + work.decisions, concurrency=50, total=work)
            assert time.monotonic() - t0 < DEADLINE_S, workers.tail()
        os.killpg(pid, signal.SIGKILL)
        killed = time.perf_counter()
        workers.procs[0].wait(5)
        orphaned = await pending(redis, key_prefix)
        await run_decisions(h, 300, seed=999, concurrency=50, total=work)  # more meanwhile
        await workers.start("w-b", "--batch", "150")
        expected = set(await stream_event_ids(redis, key_prefix))
        while not (
            await store.event_count() == len(expected) and not await outstanding(redis, key_prefix)
        ):
            assert time.monotonic() - t0 < DEADLINE_S, workers.tail()
            await asyncio.sleep(0.02)
        done = time.perf_counter() - killed
        print(f"\nbilling ({redis_target.name}): {orphaned} orphaned entries, all billed "
              f"{done:.3f} s after the kill")  # fmt: skip
        assert done < 15.0  # heartbeat 3 s + a check + a restart; the idle reclaim is 30 s
        assert orphaned > 0 and "of dead consumer w-a" in workers.tail()
        workers.procs[-1].send_signal(signal.SIGTERM)
        assert workers.procs[-1].wait(15) == 0, workers.tail()
    finally:
        workers.stop_all()
    stored = await all_stored_ids(store)
    assert len(stored) == len(set(stored)) == len(expected) and set(stored) == expected
    # the totals: what the store billed per customer is what the decisions admitted
    calendar = BillingCalendar.of(support.test_policy())
    for c in CUSTOMERS:
        window = calendar.window(c, h.clock.now())
        sums = await store.usage_sums(c, window.start, window.end)
        assert sum(s.amount_nano for s in sums.values()) == work.cost_by_customer.get(c, 0)
