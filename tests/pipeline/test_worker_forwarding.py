"""`gatekeeper worker` with GATEKEEPER_FORWARDER_URL: every event stored and forwarded once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from redis.asyncio import Redis

from gatekeeper.billing import BillingStore
from tests.billing.stores import StoreTarget
from tests.conftest import RedisTarget
from tests.forward.receiver import Receiver, serve
from tests.pipeline.support import (
    all_stored_ids,
    harness,
    run_decisions,
    stream_event_ids,
    worker_env,
    write_policy,
)


async def test_worker_stores_and_forwards_through_an_outage(
    store_target: StoreTarget,
    store: BillingStore,
    redis: Redis,
    redis_target: RedisTarget,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    await run_decisions(harness(redis, key_prefix), 300, seed=3, concurrency=20)
    expected = set(await stream_event_ids(redis, key_prefix))
    async with serve(Receiver(fail_first=3, fail_status=503, retry_after="0")) as receiver:
        env = worker_env(redis_target, key_prefix, write_policy(tmp_path))
        env |= {
            "GATEKEEPER_BILLING_DSN": store_target.dsn,
            "GATEKEEPER_FORWARDER_URL": receiver.url,
            "GATEKEEPER_FORWARDER_BATCH_SIZE": "50",
            "GATEKEEPER_FORWARDER_MAX_WAIT_MS": "50",
        }
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gatekeeper", "worker", "--block-ms", "100"],
                env=env, stdout=out, stderr=out, start_new_session=True,
            )  # fmt: skip
        try:
            await asyncio.wait_for(receiver.wait_for(expected), 60)
            for _ in range(600):
                if set(await all_stored_ids(store)) == expected:
                    break
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    assert set(receiver.accepted) == expected
    assert max(receiver.deliveries.values()) == 1  # each event accepted once
    assert receiver.requests > 3  # the outage was retried through
    assert sorted(await all_stored_ids(store)) == sorted(expected)
    assert "forwarding usage events as CloudEvents" in log.read_text()
