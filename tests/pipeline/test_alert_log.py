"""Every alert lands in the billing store's alert log once (what GET .../alerts reads), with
or without a webhook; a delivery marks it delivered; a restarted log resumes at once."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from gatekeeper.billing import BillingStore
from gatekeeper.config import parse_config
from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.events import AlertEvent
from gatekeeper.pipeline.alert_log import AlertLog
from gatekeeper.pipeline.forwarding import _mark_delivered
from gatekeeper.store.consumers import Liveness
from gatekeeper.store.keys import KeySpace
from tests.engine.harness import START, make_harness
from tests.pipeline.support import PARTITIONS, POLICY_YAML


async def _alerts(redis: Redis, key_prefix: str) -> None:
    policy = parse_config(
        POLICY_YAML.replace(
            "images: {limit: 40, period: day}",
            "images: {limit: 40, period: day, alert_thresholds: [50, 80, 100]}",
        ),
        env={},
    ).policy
    h = make_harness(redis, policy, key_prefix, partitions=PARTITIONS)
    request = DecisionRequest("beta", meters=(MeterRequest("images", 1),))
    await asyncio.gather(*(h.engine.decide(request) for _ in range(60)))


async def test_each_alert_is_logged_once_and_marked_when_delivered(
    redis: Redis, key_prefix: str, store: BillingStore
) -> None:
    await _alerts(redis, key_prefix)
    keys = KeySpace(prefix=key_prefix, partitions=PARTITIONS)
    first = AlertLog(redis=redis, store=store, keys=keys, consumer="w1", block_ms=10)
    for _ in range(20):
        if first.stats.logged >= 4:
            break
        await first.run_once(block_ms=10)
    logged = await store.alerts("beta")
    # 60 requests against 40: three thresholds and one block episode
    assert sorted((a.kind, a.threshold) for a in logged) == [
        ("blocked", 100),
        ("threshold", 50),
        ("threshold", 80),
        ("threshold", 100),
    ]
    assert all(a.delivered_at is None for a in logged)
    # the log keeps what refused the customer (GET .../alerts shows it as `cause`)
    assert [a.cause for a in logged if a.kind == "blocked"] == ["quota_exhausted"]
    assert {a.cause for a in logged if a.kind == "threshold"} == {None}
    second = AlertLog(redis=redis, store=store, keys=keys, consumer="w2")  # a restarted worker
    assert await second.run_once(block_ms=10) == 0 and second.stats.logged == 0
    # a delivery (the notifier's callback) marks them; logging again changes nothing
    at = START
    events = await _events(redis, keys)
    await _mark_delivered(store)(events, at)
    assert all(a.delivered_at is not None for a in await store.alerts("beta"))


async def _events(redis: Redis, keys: KeySpace) -> list[AlertEvent]:
    found = []
    for stream in keys.all_alert_streams():
        for _, fields in await redis.xrange(stream):
            found.append(AlertEvent.from_fields(fields))
    return found


async def _read_and_vanish(redis: Redis, keys: KeySpace, store: BillingStore, name: str) -> None:
    """A worker that read every alert entry and stopped before logging and acknowledging."""
    crashed = AlertLog(redis=redis, store=store, keys=keys, consumer=name)
    await crashed.ensure_groups()
    assert len(await crashed._read(10)) == 4
    assert await store.alerts("beta") == []


async def test_entries_read_by_a_stopped_worker_are_logged_by_the_next_at_once(
    redis: Redis, key_prefix: str, store: BillingStore
) -> None:
    await _alerts(redis, key_prefix)
    keys = KeySpace(prefix=key_prefix, partitions=PARTITIONS)
    await _read_and_vanish(redis, keys, store, "w1")
    restarted = AlertLog(redis=redis, store=store, keys=keys, consumer="w1")
    await restarted.run_once(block_ms=10)  # its own pending first: no idle timeout to wait
    assert len(await store.alerts("beta")) == 4  # three thresholds, one block


async def test_a_stopped_workers_entries_are_taken_over_by_another_at_once(
    redis: Redis, key_prefix: str, store: BillingStore
) -> None:
    await _alerts(redis, key_prefix)
    keys = KeySpace(prefix=key_prefix, partitions=PARTITIONS)
    stopping = AlertLog(redis=redis, store=store, keys=keys, consumer="w1")
    async with stopping._group.alive():  # its heartbeat; leaving it = a graceful stop
        await stopping.ensure_groups()
        assert len(await stopping._read(10)) == 4
        often = Liveness(check_interval_s=0.05)
        other = AlertLog(redis=redis, store=store, keys=keys, consumer="w2", liveness=often)
        assert await other.run_once(block_ms=10) == 0  # w1 is alive: its entries stay
    await asyncio.sleep(0.06)  # the next check
    assert await other.run_once(block_ms=10) == 4  # w1 stopped: taken over, no idle wait
    assert len(await store.alerts("beta")) == 4
    assert other._group.taken_over == 4 and other._group.released >= 1
    for stream in keys.all_alert_streams():  # w1 left the group once it held nothing
        names = {c["name"] for c in await redis.xinfo_consumers(stream, "gatekeeper-alert-log")}
        assert b"w1" not in names


async def test_the_shared_consumer_of_older_workers_is_reclaimed_once_idle(
    redis: Redis, key_prefix: str, store: BillingStore
) -> None:
    await _alerts(redis, key_prefix)
    keys = KeySpace(prefix=key_prefix, partitions=PARTITIONS)
    await _read_and_vanish(redis, keys, store, "alert-log")  # never kept a heartbeat
    new = AlertLog(
        redis=redis, store=store, keys=keys, consumer="w2", min_idle_ms=300,
        reclaim_interval_s=0.05,
    )  # fmt: skip
    assert await new.run_once(block_ms=None) == 0  # maybe still working: not taken for dead
    await asyncio.sleep(0.35)
    assert await new.run_once(block_ms=None) == 4  # idle for min_idle_ms: reclaimed
    assert len(await store.alerts("beta")) == 4
