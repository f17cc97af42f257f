"""UsageForwarder over real Redis streams and a real local receiver: nothing lost, ids stable."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from gatekeeper.forward import (
    GROUP,
    DeadLetter,
    ForwardUnavailable,
    HttpForwarder,
    JsonObject,
    SendResult,
    UsageForwarder,
)
from gatekeeper.money import NANO
from gatekeeper.store.keys import KeySpace
from tests.forward.helpers import produce, settings, stream_events, validate
from tests.forward.receiver import Receiver, serve

CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli"]


class Letters:
    def __init__(self) -> None:
        self.items: list[DeadLetter] = []

    async def __call__(self, letter: DeadLetter) -> None:
        self.items.append(letter)


@asynccontextmanager
async def forwarder(
    redis: Redis, prefix: str, receiver: Receiver, *, consumer: str = "fw-1", **kw: Any
) -> AsyncIterator[tuple[UsageForwarder, Letters]]:
    letters = Letters()
    reclaim = kw.pop("reclaim_idle_ms", 60_000)
    cfg = settings(receiver.url, **kw)
    http = HttpForwarder(settings=cfg, dead_letter=letters)
    fw = UsageForwarder(
        redis=redis,
        keys=KeySpace(prefix=prefix),
        sender=http,
        dead_letter=letters,
        settings=cfg,
        consumer=consumer,
        reclaim_idle_ms=reclaim,
    )
    try:
        yield fw, letters
    finally:
        await http.aclose()


async def pending(redis: Redis, prefix: str) -> int:
    total = 0
    for stream in KeySpace(prefix=prefix).all_usage_streams():
        total += (await redis.xpending(stream, GROUP))["pending"]
    return total


@pytest.mark.parametrize("retry_after", [None, "0"])
async def test_receiver_outage_loses_nothing_and_each_id_arrives(
    redis: Redis, key_prefix: str, retry_after: str | None
) -> None:
    total = await produce(redis, key_prefix, CUSTOMERS, per_customer=6)
    truth = {e.id: e for e in await stream_events(redis, key_prefix)}
    assert len(truth) == total and len({KeySpace().partition(c) for c in CUSTOMERS}) > 1
    r = Receiver(fail_first=5, retry_after=retry_after)
    async with asyncio.timeout(20), serve(r), forwarder(redis, key_prefix, r) as (fw, letters):
        task = asyncio.create_task(fw.run())
        await r.wait_for(set(truth))
        # events admitted while the loop runs are forwarded too
        more = await produce(redis, key_prefix, ["late-customer"], per_customer=2)
        truth = {e.id: e for e in await stream_events(redis, key_prefix)}
        assert len(truth) == total + more
        await r.wait_for(set(truth))
        fw.stop()
        await task
        assert fw.healthy and letters.items == []
        assert fw.consecutive_failures == 0 and fw.last_error is not None  # it did fail, then
    assert set(r.accepted) == set(truth)  # every admitted event, nothing else
    assert all(n == 1 for n in r.deliveries.values())  # acked only after 2xx: no resends here
    assert r.requests > 5 and all(
        ct == "application/cloudevents-batch+json" for ct in r.content_types
    )
    for body in r.bodies:
        for obj in json.loads(body):
            validate(obj)
    for event_id, obj in r.accepted.items():
        usage = truth[event_id]
        ce = validate(obj)
        assert ce.get_id() == usage.id and ce.get_subject() == usage.customer
        data = ce.get_data()
        assert isinstance(data, dict)
        assert data["amount_nano"] == usage.amount_nano
        assert Decimal(data["amount"]) * NANO == usage.amount_nano
        assert data["quantity"] == usage.quantity
    assert await pending(redis, key_prefix) == 0
    assert fw.forwarded == len(truth)


async def test_failed_batch_is_resent_with_the_same_ids(redis: Redis, key_prefix: str) -> None:
    await produce(redis, key_prefix, ["acme"], per_customer=3)
    r = Receiver(fail_first=2)  # max_attempts=2: the first run_once gives up
    async with (
        asyncio.timeout(10),
        serve(r),
        forwarder(redis, key_prefix, r, batch_size=50) as (
            fw,
            _,
        ),
    ):
        with pytest.raises(ForwardUnavailable):
            await fw.run_once()
        assert await pending(redis, key_prefix) > 0  # delivered to us, not acked
        assert await fw.run_once() == len(r.accepted) > 0
    first, _, third = (json.loads(b) for b in r.bodies)
    assert first == third  # the same events with the same ids: receivers dedupe on id
    assert {e["id"] for e in first} == {e.id for e in await stream_events(redis, key_prefix)}
    assert await pending(redis, key_prefix) == 0


async def test_dead_consumer_entries_are_reclaimed(redis: Redis, key_prefix: str) -> None:
    await produce(redis, key_prefix, ["acme", "globex"], per_customer=3)
    truth = {e.id for e in await stream_events(redis, key_prefix)}
    down = Receiver(final_status=200, fail_first=10**6)
    up = Receiver()
    async with asyncio.timeout(10), serve(down), serve(up):
        async with forwarder(redis, key_prefix, down, consumer="dead", batch_size=100) as (a, _):
            with pytest.raises(ForwardUnavailable):
                await a.run_once()  # "dead" holds every entry, then crashes
        assert await pending(redis, key_prefix) == len(truth)
        async with forwarder(
            redis, key_prefix, up, consumer="alive", batch_size=100, reclaim_idle_ms=0
        ) as (b, _):
            assert await b.run_once() == len(truth)
    assert set(up.accepted) == truth
    assert await pending(redis, key_prefix) == 0


async def test_refused_batch_is_dead_lettered_and_acked(redis: Redis, key_prefix: str) -> None:
    await produce(redis, key_prefix, ["acme"], per_customer=2)
    truth = {e.id for e in await stream_events(redis, key_prefix)}
    r = Receiver(final_status=400)
    async with (
        asyncio.timeout(10),
        serve(r),
        forwarder(redis, key_prefix, r, batch_size=50) as (
            fw,
            letters,
        ),
    ):
        assert await fw.run_once() == len(truth)
        assert await fw.run_once() == 0
    [letter] = letters.items
    assert letter.status == 400 and "HTTP 400" in letter.reason
    assert {e["id"] for e in letter.events} == truth
    assert r.requests == 1 and fw.dead_lettered == len(truth)
    assert await pending(redis, key_prefix) == 0


async def test_unparseable_entry_is_dead_lettered_not_forwarded(
    redis: Redis, key_prefix: str
) -> None:
    await produce(redis, key_prefix, ["acme"], per_customer=1)
    truth = {e.id for e in await stream_events(redis, key_prefix)}
    keys = KeySpace(prefix=key_prefix)
    # the one hand-made entry: a corrupt record the engine would never write
    await redis.xadd(keys.usage_stream(keys.partition("acme")), {"id": "broken", "type": "usage"})
    r = Receiver()
    async with (
        asyncio.timeout(10),
        serve(r),
        forwarder(redis, key_prefix, r, batch_size=50) as (
            fw,
            letters,
        ),
    ):
        assert await fw.run_once() == 4
    [letter] = letters.items
    assert letter.status is None and "lacks field" in letter.reason
    assert letter.raw[0]["id"] == "broken" and "broken" not in r.accepted
    assert set(r.accepted) == truth


async def test_stop_is_prompt_while_idle_and_during_a_hanging_post(
    redis: Redis, key_prefix: str
) -> None:
    r = Receiver()
    async with (
        asyncio.timeout(10),
        serve(r),
        forwarder(redis, key_prefix, r, max_wait_ms=10_000) as (fw, _),
    ):
        task = asyncio.create_task(fw.run())
        await asyncio.sleep(0.2)
        started = time.monotonic()
        fw.stop()
        await task
        assert time.monotonic() - started < 0.5 and not fw.running
    await produce(redis, key_prefix, ["acme"], per_customer=1)
    slow = Receiver(hang_s=5.0)
    async with (
        asyncio.timeout(10),
        serve(slow),
        forwarder(redis, key_prefix, slow, max_wait_ms=10, timeout_s=10.0) as (fw, _),
    ):
        task = asyncio.create_task(fw.run())
        while slow.requests == 0:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        fw.stop()
        await task
        assert time.monotonic() - started < 0.5 and fw.healthy
    assert await pending(redis, key_prefix) == 3  # abandoned unacked: sent again later


class Exploding:
    async def send(self, events: Sequence[JsonObject]) -> SendResult:
        raise RuntimeError("bug in a sender")


async def test_health_turns_false_when_the_loop_dies(redis: Redis, key_prefix: str) -> None:
    await produce(redis, key_prefix, ["acme"], per_customer=1)
    cfg = settings("http://127.0.0.1:9/unused")
    fw = UsageForwarder(
        redis=redis,
        keys=KeySpace(prefix=key_prefix),
        sender=Exploding(),
        dead_letter=Letters(),
        settings=cfg,
        consumer="fw",
    )
    assert fw.healthy
    async with asyncio.timeout(10):
        with pytest.raises(RuntimeError, match="bug in a sender"):
            await fw.run()
    assert not fw.healthy and not fw.running
    assert await pending(redis, key_prefix) == 3  # tokens reservation + request + settlement


async def test_empty_streams_return_after_max_wait(redis: Redis, key_prefix: str) -> None:
    r = Receiver()
    async with (
        asyncio.timeout(10),
        serve(r),
        forwarder(redis, key_prefix, r, max_wait_ms=30) as (
            fw,
            _,
        ),
    ):
        started = time.monotonic()
        assert await fw.run_once() == 0
        assert 0.02 <= time.monotonic() - started < 1.0
        assert r.requests == 0
        await fw.run_once()  # group creation is idempotent (BUSYGROUP)
