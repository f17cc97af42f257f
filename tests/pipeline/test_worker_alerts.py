"""`gatekeeper worker` with a webhook configured delivers signed threshold alerts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from redis.asyncio import Redis

from gatekeeper.config import load_config
from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.notify import generate_secret
from tests.billing.stores import StoreTarget
from tests.conftest import RedisTarget
from tests.engine.harness import make_harness
from tests.notify.receiver import WebhookReceiver
from tests.pipeline.support import PARTITIONS, POLICY_YAML


async def test_worker_delivers_threshold_webhooks_once(
    store_target: StoreTarget, redis: Redis, redis_target: RedisTarget, key_prefix: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    secret = generate_secret()
    receiver = await WebhookReceiver(secrets=[secret]).start()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        POLICY_YAML.replace(
            "images: {limit: 40, period: day}",
            "images: {limit: 40, period: day, alert_thresholds: [50, 80, 100]}",
        )
        + f"""settings:
  alerts:
    digest_window_s: 1
    webhooks:
      - {{url: "{receiver.url}", secret_env: TEST_WEBHOOK_SECRET, kinds: [threshold]}}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
    env |= {
        "GATEKEEPER_CONFIG": str(policy),
        "GATEKEEPER_REDIS_URL": redis_target.url,
        "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix,
        "GATEKEEPER_REDIS_PARTITIONS": str(PARTITIONS),
        "GATEKEEPER_BILLING_DSN": store_target.dsn,
        "TEST_WEBHOOK_SECRET": secret,
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper", "worker", "--block-ms", "100"],
            env=env, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    try:
        loaded = load_config(policy, env={})
        h = make_harness(redis, loaded.policy, key_prefix, partitions=PARTITIONS)
        request = DecisionRequest("beta", meters=(MeterRequest("images", 1),))
        await asyncio.gather(*(h.engine.decide(request) for _ in range(60)))
        for _ in range(600):  # the first alert at once, the other two in one digest
            if len(_thresholds(receiver)) >= 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # a digest window: nothing more may arrive
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        await receiver.stop()
    assert sorted(_thresholds(receiver)) == [("beta", "images", t) for t in (50, 80, 100)]
    assert len(receiver.accepted) == 2  # the first alert, then one digest of the other two
    assert max(receiver.arrivals.values()) == 1 and not receiver.rejected
    assert "delivering alerts to 1 operator webhook endpoint(s)" in log.read_text()
    store = await store_target.open()  # the alert log the API reads: each alert, delivered
    try:
        logged = await store.alerts("beta")
    finally:
        await store.close()
    thresholds = [a for a in logged if a.kind == "threshold"]
    assert sorted(a.threshold for a in thresholds) == [50, 80, 100]
    assert all(a.delivered_at is not None for a in thresholds), logged
    # the block (60 requests against 40) is logged too, and not sent: the endpoint takes
    # threshold alerts only
    [blocked] = [a for a in logged if a.kind == "blocked"]
    assert blocked.delivered_at is None


def _thresholds(receiver: WebhookReceiver) -> list[tuple[str, str, int]]:
    found = []
    for arrival in receiver.accepted.values():
        body = arrival.json()
        items = body["alerts"] if body["type"] == "gatekeeper.alert.digest" else [body]
        found += [(a["customer"], a["feature"], a["threshold"]) for a in items]
    return found
