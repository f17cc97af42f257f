"""Decisions whose reply was lost (store/journal.py, lua/void.lua), made one at a time with a
proxy that drops replies or holds requests in front of a real Redis.

Billed = answered 200: a lost decision answered as an error is given back exactly (counters,
grants, rate window, spend, reservation, idempotency record; a netting adjustment event) if it
ran, and can never run afterwards if it had not; one kept (fail-open) counts once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from gatekeeper.engine import DecisionRequest, LimitStatus, MeterRequest, Outcome
from gatekeeper.errors import StoreUnavailable
from gatekeeper.settings import RedisSettings
from gatekeeper.store import RedisDecisionStore
from gatekeeper.store.connection import connect_redis
from tests.conftest import RedisTarget, also_on_cluster
from tests.engine.harness import START, Harness, make_harness
from tests.engine.policies import cap, flat, grant, metered, plan, policy, rate
from tests.store.reply_cutter import ReplyCutter

PRICE_NANO = 1_000_000


def _policy():  # type: ignore[no-untyped-def]
    p = plan(
        "p",
        metered("requests", 10),
        metered("tokens", 1_000),
        rates=(rate("requests", 100),),
        spend_cap=cap(1_000 * PRICE_NANO),
    )
    return policy(
        p,
        prices=(flat("requests", PRICE_NANO), flat("tokens", 1_000)),
        grants=(grant("welcome", "tokens", 50, START + timedelta(days=30)),),
    )


def req(requests: int = 1, tokens: int = 30, *, key: str | None = None) -> DecisionRequest:
    return DecisionRequest(
        "cust",
        requires=("api_access",),
        meters=(MeterRequest("requests", requests), MeterRequest("tokens", tokens)),
        idempotency_key=key,
    )


@pytest.fixture
async def cutter(redis_target: RedisTarget) -> AsyncIterator[ReplyCutter]:
    if redis_target.cluster:
        pytest.skip("one server behind the proxy")
    proxy = await ReplyCutter(redis_target.url).start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
async def h(cutter: ReplyCutter, redis: Redis, key_prefix: str) -> AsyncIterator[Harness]:
    """An engine whose store talks through the proxy (auto-pipelined, 1 s call timeout)."""
    client = connect_redis(f"{cutter.url}?socket_timeout=1", RedisSettings())
    harness = make_harness(client, _policy(), key_prefix)
    try:
        yield harness
    finally:
        await client.aclose()


async def _state(h: Harness) -> tuple[tuple[LimitStatus, ...] | None, list[int]]:
    """Every counter of the customer now, and its grants' consumption."""
    return await h.engine.usage("cust"), await h.store.grants_used("cust", ["welcome"])


async def _net_billed(h: Harness, redis: Redis) -> dict[str, tuple[int, int]]:
    """decision id -> (quantity, amount) summed over its usage events (the billing store's sum)."""
    totals: dict[str, tuple[int, int]] = {}
    for _, f in await redis.xrange(h.usage_stream()):
        d = f[b"decision_id"].decode()
        q, a = totals.get(d, (0, 0))
        totals[d] = (q + int(f[b"quantity"]), a + int(f[b"amount_nano"]))
    return totals


async def _until(predicate, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _lose_applied(h: Harness, redis: Redis, cutter: ReplyCutter, request: DecisionRequest):  # type: ignore[no-untyped-def]
    """Run `request` to completion in Redis with its reply lost; the StoreUnavailable."""
    before = await redis.xlen(h.usage_stream())
    cutter.swallow = True
    call = asyncio.create_task(h.engine.decide(request))

    async def applied() -> bool:
        return bool(await redis.xlen(h.usage_stream()) > before)

    await _until(applied)
    cutter.cut()
    with pytest.raises(StoreUnavailable) as lost:
        await call
    cutter.swallow = False
    return lost.value


async def test_an_applied_decision_whose_reply_was_lost_is_given_back_exactly(
    h: Harness, redis: Redis, cutter: ReplyCutter
) -> None:
    kept = await h.engine.decide(req(tokens=40))  # 40 of the 50-token grant, then billable
    assert kept.allowed
    before = await _state(h)
    error = await _lose_applied(h, redis, cutter, req(tokens=30))  # 10 granted, 20 billable
    assert error.decision_id is not None and h.store.journal.pending == 1
    assert await _state(h) != before  # it did run
    assert await h.engine.void_lost() == 1
    assert h.store.journal.pending == 0 and h.store.journal.voided == 1
    assert await _state(h) == before  # quota, rate window, spend, grant: as if never
    billed = await _net_billed(h, redis)
    assert billed[error.decision_id] == (0, 0)  # its events net to nothing
    assert billed[kept.decision_id] == (41, PRICE_NANO)  # 1 request + 40 tokens from the grant
    voids = [f for _, f in await redis.xrange(h.usage_stream()) if f[b"id"].endswith(b".void")]
    assert {(f[b"type"], f[b"estimate"], f[b"actual"]) for f in voids} == {
        (b"adjustment", b"1", b"0"),
        (b"adjustment", b"30", b"0"),
    }
    assert await h.engine.void_lost() == 0  # nothing twice


async def test_a_void_that_finds_nothing_keeps_a_late_write_from_ever_applying(
    h: Harness, redis: Redis, cutter: ReplyCutter
) -> None:
    before = await _state(h)
    cutter.hold = True  # the call is on its way, not yet at Redis
    call = asyncio.create_task(h.engine.decide(req()))
    await asyncio.sleep(0.1)
    cutter.cut()
    with pytest.raises(StoreUnavailable) as lost:
        await call
    cutter.hold = False
    assert await h.engine.void_lost() == 0  # not applied: marked, nothing to give back
    assert h.store.journal.unapplied == 1
    await cutter.release()  # the held write reaches Redis after its caller gave up
    await asyncio.sleep(0.1)
    assert await _state(h) == before
    assert lost.value.decision_id not in await _net_billed(h, redis)


async def test_a_kept_decision_counts_once_whether_its_lost_call_landed_or_not(
    h: Harness, redis: Redis, cutter: ReplyCutter
) -> None:
    # landed: the offline record under the same id changes nothing more
    error = await _lose_applied(h, redis, cutter, req(requests=2))
    assert error.decision_id is not None
    h.engine.keep_lost(error.decision_id)
    replay = await h.engine.decide(req(requests=2), force=True, decision_id=error.decision_id)
    h.engine.recorded(error.decision_id)
    assert replay.allowed and await h.engine.void_lost() == 0
    # did not land: the offline record applies it, and the late write changes nothing
    cutter.hold = True
    call = asyncio.create_task(h.engine.decide(req(requests=3)))
    await asyncio.sleep(0.1)
    cutter.cut()
    with pytest.raises(StoreUnavailable) as held:
        await call
    cutter.hold = False
    second = held.value.decision_id
    assert second is not None
    h.engine.keep_lost(second)
    assert (await h.engine.decide(req(requests=3), force=True, decision_id=second)).allowed
    await cutter.release()
    await asyncio.sleep(0.1)
    billed = await _net_billed(h, redis)
    assert billed[error.decision_id][0] == 2 + 30 and billed[second][0] == 3 + 30
    usage = await h.engine.usage("cust")
    assert usage is not None
    quota = next(s for s in usage if s.feature == "requests" and s.kind.value == "quota")
    assert quota.used == 5


async def test_a_voided_decision_frees_its_idempotency_key_and_its_reservation(
    h: Harness, redis: Redis, cutter: ReplyCutter
) -> None:
    reserve = DecisionRequest(
        "cust",
        requires=("api_access",),
        meters=(MeterRequest("tokens", 30, reserve=True),),
        idempotency_key="order-7",
    )
    error = await _lose_applied(h, redis, cutter, reserve)
    assert error.decision_id is not None
    assert await h.store.reservation_time("cust", error.decision_id) is not None
    assert await h.engine.void_lost() == 1
    assert await h.store.reservation_time("cust", error.decision_id) is None
    retried = await h.engine.decide(reserve)  # the client's retry: decided afresh, once
    assert retried.allowed and not retried.replayed
    assert retried.decision_id != error.decision_id
    assert (await _net_billed(h, redis))[retried.decision_id][0] == 30


async def test_hard_limit_never_overshot_and_billed_equals_answered_through_lost_replies(
    h: Harness, redis: Redis, cutter: ReplyCutter
) -> None:
    answered: list[str] = []
    lost: list[str | None] = []
    for i in range(16):  # the limit is 10 requests a day; 3 of the first 8 lose their reply
        if i in (1, 4, 7):
            lost.append((await _lose_applied(h, redis, cutter, req(tokens=1))).decision_id)
            assert await h.engine.void_lost() == 1
            continue
        decision = await h.engine.decide(req(tokens=1))
        if decision.allowed:
            answered.append(decision.decision_id)
        else:
            assert decision.outcome is Outcome.QUOTA_EXHAUSTED
    billed = {d for d, (q, _) in (await _net_billed(h, redis)).items() if q}
    assert billed == set(answered) and len(answered) == 10
    assert not billed & set(lost)


async def test_journals_are_retired_unless_an_unresolved_decision_needs_one(
    h: Harness, redis: Redis, cutter: ReplyCutter, key_prefix: str
) -> None:
    clock = [1_000_000.0]
    h.store.journal._now = lambda: clock[0]  # the journal's wall clock, driven by the test
    for _ in range(3):
        assert (await h.engine.decide(req(tokens=1))).allowed
    pattern = f"{key_prefix}:*:j:*"
    assert [k async for k in redis.scan_iter(match=pattern)]
    assert await h.store.retire_journals() == 0  # ids this recent may still be in flight
    error = await _lose_applied(h, redis, cutter, req(tokens=1))
    assert error.decision_id is not None
    clock[0] = 2e12  # long after: only the lost decision's journal must stay
    await h.store.retire_journals()
    partition = h.store.keys.partition("cust")
    assert await redis.exists(h.store.journal.key(partition, error.decision_id))
    assert await h.engine.void_lost() == 1
    assert await h.store.retire_journals() >= 1
    assert [k async for k in redis.scan_iter(match=pattern)] == []


class _LosingStore(RedisDecisionStore):
    """The real store, whose next decision call runs and then loses its reply (as a dropped
    connection would): for the Cluster, where no proxy sits between client and nodes."""

    lose_next = False

    async def _call(self, script, keys, args, counters_resp):  # type: ignore[no-untyped-def]
        reply = await super()._call(script, keys, args, counters_resp)
        if self.lose_next and script.name == "decide":
            self.lose_next = False
            raise StoreUnavailable("redis unavailable: connection lost (test)")
        return reply


@also_on_cluster()
async def test_void_runs_in_the_customers_slot_on_a_cluster_too(
    redis_target: RedisTarget, redis: Redis, key_prefix: str
) -> None:
    client = connect_redis(redis_target.url, redis_target.settings)
    try:
        store = _LosingStore(redis=client, settings=RedisSettings(key_prefix=key_prefix))
        h = make_harness(client, _policy(), key_prefix)
        h.engine._store = store  # the harness's engine, on the losing store
        h.store = store
        kept = await h.engine.decide(req())
        before = await _state(h)
        store.lose_next = True
        with pytest.raises(StoreUnavailable) as lost:
            await h.engine.decide(req(requests=2, tokens=40))
        assert await _state(h) != before
        assert await h.engine.void_lost() == 1
        assert await _state(h) == before
        billed = await _net_billed(h, redis)
        assert billed[kept.decision_id][0] == 31 and billed[lost.value.decision_id or ""] == (0, 0)
        assert await h.store.retire_journals(every=True) >= 1
    finally:
        await client.aclose()
