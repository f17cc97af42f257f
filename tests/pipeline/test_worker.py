"""The billing worker over real Redis and both stores: exactly once, reclaim, backpressure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from gatekeeper.billing import BilledEvent, BillingStore, BillingStoreError, RecordResult
from gatekeeper.pipeline import BILLING_GROUP, WorkerFailed
from gatekeeper.store.consumers import read_group
from gatekeeper.store.localcluster import LocalCluster
from tests.conftest import RedisTarget, redis_target_of, redis_targets
from tests.pipeline.support import (
    CUSTOMERS,
    all_stored_ids,
    harness,
    keyspace,
    make_worker,
    run_decisions,
    stream_event_ids,
)


@pytest.fixture(params=redis_targets(cluster=True))
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """The worker's suite also runs on the local Redis Cluster (streams read per slot)."""
    return redis_target_of(request, request.param)


def test_customers_and_streams_sit_on_every_primary_of_the_cluster(
    redis_cluster: LocalCluster,
) -> None:
    owners = redis_cluster.slot_owners()
    ks = keyspace("gk")
    on = {owners[key_slot(ks.usage_stream(ks.partition(c)).encode())] for c in CUSTOMERS}
    assert on == set(redis_cluster.primary_ports)


async def wait_for(cond: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def pending(redis: Redis, prefix: str, group: str = BILLING_GROUP) -> int:
    """Entries delivered to the group and not acknowledged (its PEL)."""
    total = 0
    for stream in keyspace(prefix).all_usage_streams():
        if await redis.exists(stream):
            groups = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
            total += int(groups[group]["pending"]) if group in groups else 0
    return total


async def outstanding(redis: Redis, prefix: str, group: str = BILLING_GROUP) -> int:
    """Entries the group has not acknowledged: pending, or not delivered yet."""
    total = await pending(redis, prefix, group)
    for stream in keyspace(prefix).all_usage_streams():
        if await redis.exists(stream):
            groups = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
            if group not in groups:
                total += await redis.xlen(stream)
                continue
            last = groups[group]["last-delivered-id"].decode()
            total += len(await redis.xrange(stream, min=f"({last}", max="+"))
    return total


async def test_20k_decisions_store_exactly_the_admitted_events(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    work = await run_decisions(h, 20_000, concurrency=64)
    assert work.denied > 1000 and work.admitted > 15_000  # images run out: some denied
    worker = make_worker(redis, store, key_prefix, batch=2000, max_in_flight=8000)
    await worker.drain()
    in_streams = await stream_event_ids(redis, key_prefix)
    stored = await all_stored_ids(store)
    assert len(in_streams) == len(set(in_streams)) > work.admitted
    assert sorted(stored) == sorted(in_streams)
    assert await store.event_count() == len(in_streams)
    assert await outstanding(redis, key_prefix) == 0
    ks = keyspace(key_prefix)
    for c in CUSTOMERS:
        window = worker.sink._calendar.window(c, h.clock.now())
        sums = await store.usage_sums(c, window.start, window.end)
        billed = sum(s.amount_nano for s in sums.values())
        counter = int(await redis.hget(ks.spend(c, window.token), "u") or 0)
        assert billed == work.cost_by_customer[c] == counter


async def test_redelivery_and_two_concurrent_workers_count_once(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await run_decisions(h, 1500)
    # the same entries again (a replayed stream, a duplicate XADD): same event ids
    copies = 0
    for stream in keyspace(key_prefix).all_usage_streams():
        for _, fields in (await redis.xrange(stream))[:100]:
            await redis.xadd(stream, fields)
            copies += 1
    ids = await stream_event_ids(redis, key_prefix)
    unique = set(ids)
    assert len(ids) - len(unique) == copies >= 100
    a = make_worker(redis, store, key_prefix, batch=100, max_in_flight=300)
    b = make_worker(redis, store, key_prefix, batch=100, max_in_flight=300)
    assert a.options.consumer != b.options.consumer
    tasks = [asyncio.create_task(w.run()) for w in (a, b)]
    try:
        await wait_for(lambda: _done(store, redis, key_prefix, len(unique)))
    finally:
        a.stop()
        b.stop()
        await asyncio.gather(*tasks)
    assert sorted(await all_stored_ids(store)) == sorted(unique)
    assert a.stats.stored + b.stats.stored == len(unique)
    assert a.stats.duplicates + b.stats.duplicates == copies
    assert a.stats.acked > 0 and b.stats.acked > 0


async def _done(store: BillingStore, redis: Redis, prefix: str, n: int) -> bool:
    return await store.event_count() == n and await outstanding(redis, prefix) == 0


async def test_entries_of_a_dead_consumer_are_reclaimed(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await run_decisions(h, 100)
    # idle is Redis's own clock: a drain that is slow on a loaded machine (PostgreSQL) must not
    # reach the reclaim threshold, so the draining worker waits a minute, the reclaiming one 50 ms
    drainer = make_worker(redis, store, key_prefix)
    await drainer.ensure_groups()
    streams = keyspace(key_prefix).all_usage_streams()
    taken = await read_group(redis, BILLING_GROUP, "dead-1", streams, count=15, block_ms=None)
    assert taken
    await drainer.drain()  # everything else; the dead consumer's entries are not idle long enough
    assert await store.event_count() == len(await stream_event_ids(redis, key_prefix)) - len(taken)
    worker = make_worker(redis, store, key_prefix, min_idle_ms=50)
    await asyncio.sleep(0.1)
    assert await worker.run_once() == len(taken)
    assert worker.stats.reclaimed == len(taken)
    assert sorted(await all_stored_ids(store)) == sorted(await stream_event_ids(redis, key_prefix))
    assert await outstanding(redis, key_prefix) == 0


async def test_pending_entry_deleted_before_billing_goes_to_dead_letter(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await run_decisions(h, 20)
    worker = make_worker(redis, store, key_prefix, min_idle_ms=0)
    await worker.ensure_groups()
    streams = keyspace(key_prefix).all_usage_streams()
    taken = await read_group(redis, BILLING_GROUP, "dead-2", streams, count=100, block_ms=None)
    gone = taken[0]
    await redis.xdel(gone.stream, gone.id)  # e.g. trimmed by hand while pending
    await worker.drain()
    assert await store.event_count() == len(taken) - 1
    assert await outstanding(redis, key_prefix) == 0  # both reply shapes: 6.2 (nil) and 7 (ids)
    dead = await redis.xrange(worker.sink._dead.stream_for(gone.stream))
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"entry_id"].decode() == gone.id and b"deleted" in fields[b"reason"]


async def test_malformed_entry_is_dead_lettered_after_max_tries_and_good_ones_flow(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await run_decisions(h, 30)
    stream = keyspace(key_prefix).usage_stream(0)
    # the one hand-made entry of the suite: a malformed one (no quantity, amount, time ...)
    bad_id = (await redis.xadd(stream, {"id": "bad-1", "type": "usage", "customer": "x"})).decode()
    worker = make_worker(redis, store, key_prefix, min_idle_ms=0, max_tries=3)
    good = len(await stream_event_ids(redis, key_prefix)) - 1
    await worker.run_once()
    assert await store.event_count() == good
    assert await pending(redis, key_prefix) == 1  # tried once, left pending
    await worker.run_once()
    assert await pending(redis, key_prefix) == 1 and worker.stats.dead_lettered == 0
    await worker.run_once()  # third delivery fails too: dead letter
    assert await outstanding(redis, key_prefix) == 0 and worker.stats.dead_lettered == 1
    (entry,) = await redis.xrange(keyspace(key_prefix).dead_letter(0))
    f = {k.decode(): v.decode() for k, v in entry[1].items()}
    assert f["entry_id"] == bad_id and f["stream"] == stream and f["tries"] == "3"
    assert f["reason"].startswith("unparseable") and "lacks field" in f["reason"]
    assert (f["f.id"], f["f.type"], f["f.customer"]) == ("bad-1", "usage", "x")
    assert await store.event_count() == good


class FlakyStore:
    """Delegates to a real store; fails on command (transiently, permanently, or gated)."""

    def __init__(self, inner: BillingStore) -> None:
        self.inner = inner
        self.transient_failures = 0
        self.reject_ids: set[str] = set()
        self.gate: asyncio.Event | None = None
        self.crash = False

    async def record(self, events: Sequence[BilledEvent]) -> RecordResult:
        if self.crash:
            raise RuntimeError("bug in the store adapter")
        if self.gate is not None:
            await self.gate.wait()
        if self.transient_failures > 0:
            self.transient_failures -= 1
            raise BillingStoreError("connection reset", transient=True)
        if any(e.event.id in self.reject_ids for e in events):
            raise BillingStoreError("value out of range", transient=False)
        return await self.inner.record(events)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_store_rejecting_one_event_dead_letters_only_that_one(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await run_decisions(h, 40)
    ids = await stream_event_ids(redis, key_prefix)
    flaky = FlakyStore(store)
    flaky.reject_ids = {ids[3]}
    worker = make_worker(redis, flaky, key_prefix, min_idle_ms=0, max_tries=2)  # type: ignore[arg-type]
    await worker.drain()
    assert await store.event_count() == len(ids) - 1
    assert worker.stats.dead_lettered == 1 and await outstanding(redis, key_prefix) == 0


async def test_transient_store_errors_are_retried_not_dead_lettered(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await run_decisions(h, 200)
    n = len(await stream_event_ids(redis, key_prefix))
    flaky = FlakyStore(store)
    flaky.transient_failures = 3
    worker = make_worker(redis, flaky, key_prefix, backoff_s=0.01, max_tries=1)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: _done(store, redis, key_prefix, n))
        assert worker.health.ready
    finally:
        worker.stop()
        await task
    assert worker.stats.dead_lettered == 0
    assert worker.stats.errors["writer:store_transient"] == 3
    assert worker.health.loops["writer"].last_error == "connection reset"


async def test_backpressure_bounds_uncommitted_entries(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await run_decisions(h, 1000)
    n = len(await stream_event_ids(redis, key_prefix))
    flaky = FlakyStore(store)
    flaky.gate = asyncio.Event()  # the store hangs
    worker = make_worker(redis, flaky, key_prefix, batch=50, max_in_flight=120)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)
        assert 0 < await pending(redis, key_prefix) <= 120  # read, not committed: bounded
        assert worker.stats.read <= 120
        flaky.gate.set()
        await wait_for(lambda: _done(store, redis, key_prefix, n))
    finally:
        worker.stop()
        await task


async def test_stop_finishes_and_a_dead_loop_fails_the_worker(
    store: BillingStore, redis: Redis, key_prefix: str
) -> None:
    h = harness(redis, key_prefix)
    await run_decisions(h, 50)
    flaky = FlakyStore(store)
    worker = make_worker(redis, flaky, key_prefix)  # type: ignore[arg-type]
    assert not worker.health.ready
    task = asyncio.create_task(worker.run())
    await wait_for(lambda: _nonzero(store))
    assert worker.health.ready
    flaky.crash = True
    await run_decisions(h, 5, seed=99)
    with pytest.raises(WorkerFailed, match="writer"):
        await asyncio.wait_for(task, 10)
    assert not worker.health.ready
    assert worker.health.loops["writer"].failed is not None
    assert worker.stats.errors["loop_died"] == 1


async def _nonzero(store: BillingStore) -> bool:
    return await store.event_count() > 0
