"""Crash safety: a real `gatekeeper worker` process, kill -9 at random points, restarted.

At the end every admitted event is in the store exactly once. Bounded in time; every child
process is killed in `finally`.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

from gatekeeper.billing import BillingStore
from gatekeeper.pipeline.commands import WORKER_READY
from tests.billing.stores import StoreTarget
from tests.conftest import RedisTarget
from tests.pipeline.support import (
    all_stored_ids,
    harness,
    run_decisions,
    stream_event_ids,
    worker_env,
    write_policy,
)
from tests.pipeline.test_worker import outstanding, pending

KILLS = 6
DEADLINE_S = 120  # generous: a loaded 2-core machine; it takes ~6-15 s when quiet


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "gatekeeper", "worker", "--batch", "150", "--block-ms", "100",
            "--min-idle-ms", "300", "--reclaim-interval", "0.2", "--trim-interval", "0",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=out, start_new_session=True)


async def test_kill_9_during_ingestion_then_restart_stores_each_event_once(
    store_target: StoreTarget,
    store: BillingStore,
    redis: Redis,
    redis_target: RedisTarget,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    t0 = time.monotonic()
    env = worker_env(redis_target, key_prefix, write_policy(tmp_path))
    env["GATEKEEPER_BILLING_DSN"] = store_target.dsn
    log = tmp_path / "worker.log"
    h = harness(redis, key_prefix)
    rng = random.Random(11)
    procs: list[subprocess.Popen[bytes]] = []
    orphaned: list[int] = []  # entries left pending by each killed worker
    producing = asyncio.create_task(_produce(h))
    try:
        for kill in range(KILLS):
            procs.append(start_worker(env, log))
            seen = await store.event_count()
            while await store.event_count() == seen:  # it is ingesting now
                if producing.done() and not await outstanding(redis, key_prefix):
                    break  # nothing left to ingest: kill it idle
                assert time.monotonic() - t0 < DEADLINE_S, log.read_text()[-3000:]
                await asyncio.sleep(0.02)
            if kill < 3:  # mid-batch: entries read and not yet acknowledged
                while not await pending(redis, key_prefix) and not producing.done():
                    assert time.monotonic() - t0 < DEADLINE_S, log.read_text()[-3000:]
                    await asyncio.sleep(0.001)
            else:
                await asyncio.sleep(rng.uniform(0.0, 0.4))  # a random point of the ingestion
            procs[-1].kill()  # SIGKILL: no cleanup, no ack, maybe mid-transaction
            procs[-1].wait(5)
            orphaned.append(await pending(redis, key_prefix))
        await producing
        started = log.read_text().count(WORKER_READY) if log.exists() else 0
        procs.append(start_worker(env, log))
        expected = set(await stream_event_ids(redis, key_prefix))
        while not (
            await store.event_count() == len(expected) and not await outstanding(redis, key_prefix)
        ):
            if time.monotonic() - t0 > DEADLINE_S:
                stored_now = set(await all_stored_ids(store))
                detail = (
                    f"stored={len(stored_now)} expected={len(expected)} "
                    f"missing={sorted(expected - stored_now)[:5]} "
                    f"extra={sorted(stored_now - expected)[:5]} "
                    f"outstanding={await outstanding(redis, key_prefix)} "
                    f"pending={await pending(redis, key_prefix)}"
                )
                raise AssertionError(detail + "\n" + log.read_text()[-3000:])
            await asyncio.sleep(0.05)
        while log.read_text().count(WORKER_READY) <= started:  # last one's handlers set
            assert time.monotonic() - t0 < DEADLINE_S, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        procs[-1].send_signal(signal.SIGTERM)  # graceful: finish the batch, ack, exit 0
        try:
            code = procs[-1].wait(20)  # the worker bounds its own shutdown at ~6 s + closes
        except subprocess.TimeoutExpired:
            raise AssertionError("no exit 20 s after SIGTERM\n" + log.read_text()[-3000:]) from None
        assert code == 0, log.read_text()[-3000:]
    finally:
        producing.cancel()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    stored = await all_stored_ids(store)
    assert len(stored) == len(set(stored)) == len(expected)
    assert set(stored) == expected
    assert any(orphaned), "no kill left work behind: the test did not exercise reclaiming"
    assert time.monotonic() - t0 < DEADLINE_S + 30


async def _produce(h) -> None:  # type: ignore[no-untyped-def]
    """Decisions keep arriving while the worker is killed and restarted."""
    for wave in range(40):
        await run_decisions(h, 150, seed=wave, concurrency=50)
        await asyncio.sleep(0.05)
