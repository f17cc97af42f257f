"""Alerts that follow the customer's situation: a block announced on its first refusal (not on
a percentage), once per episode; a resumption when a raised cap or limit, or a grant, ends it,
or when its window resets (announced by the worker once the window is over); thresholds armed
again when the limit they are a percentage of changes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from redis.asyncio import Redis

from gatekeeper.clock import ManualClock, to_us
from gatekeeper.engine import DecisionRequest, MeterRequest, Outcome
from gatekeeper.pipeline.resets import ResetAnnouncer
from gatekeeper.stats.blocked import BlockedReader
from tests.engine.harness import Harness, make_harness
from tests.engine.policies import cap, flat, grant, metered, plan, policy, rate


def req(qty: int = 1) -> DecisionRequest:
    return DecisionRequest("cust", meters=(MeterRequest("requests", qty),))


def _seen(alerts: list[dict[str, str]]) -> list[tuple[str, str, str, str]]:
    return [(a["kind"], a["threshold"], a["used"], a["limit"]) for a in alerts]


async def test_spend_stopping_under_the_cap_is_still_told_it_is_blocked(
    redis: Redis, key_prefix: str
) -> None:
    """Cap 0.010, 0.003 a request: spend stops at 0.009 and the 100 % threshold never fires;
    the refusal itself is announced (once), and raising the cap resumes it and re-arms."""
    p = plan("p", metered("requests", None), spend_cap=cap(10_000, thresholds=(50, 100)))
    h = make_harness(redis, policy(p, prices=(flat("requests", 3_000),)), key_prefix)
    outcomes = [(await h.engine.decide(req())).outcome for _ in range(6)]
    assert outcomes == [Outcome.ALLOWED] * 3 + [Outcome.SPEND_CAP] * 3
    alerts = await h.alerts()
    assert _seen(alerts) == [
        ("threshold", "50", "6000", "10000"),
        ("blocked", "100", "9000", "10000"),
    ]
    assert (alerts[1]["feature"], alerts[1]["cause"]) == ("", "spend_cap")

    raised = plan("p", metered("requests", None), spend_cap=cap(20_000, thresholds=(50, 100)))
    h.source.replace(policy(raised, prices=(flat("requests", 3_000),)))
    assert (await h.engine.decide(req())).allowed  # 0.012 of 0.020
    assert (await h.engine.decide(req())).allowed  # 0.015
    after = (await h.alerts())[2:]
    assert [(a["kind"], a["threshold"], a["used"], a["limit"]) for a in after] == [
        ("threshold", "50", "12000", "20000"),  # re-armed: 50 % of the new cap
        ("resumed", "100", "12000", "20000"),
    ]
    assert after[1]["cause"] == "spend_cap"


async def test_one_block_per_episode_under_concurrency(redis: Redis, key_prefix: str) -> None:
    h = make_harness(redis, policy(plan("p", metered("requests", 5))), key_prefix)
    results = await asyncio.gather(*(h.engine.decide(req()) for _ in range(40)))
    assert sum(d.allowed for d in results) == 5
    kinds = [a["kind"] for a in await h.alerts()]
    assert kinds.count("blocked") == 1 and "resumed" not in kinds


async def test_a_grant_or_a_raised_limit_resumes_and_a_fitting_request_does_not(
    redis: Redis, key_prefix: str
) -> None:
    h = make_harness(redis, policy(plan("p", metered("requests", 10))), key_prefix)
    assert (await h.engine.decide(req(8))).allowed
    assert not (await h.engine.decide(req(5))).allowed  # blocked: 8 + 5 > 10
    assert (await h.engine.decide(req(2))).allowed  # still fits: the same episode goes on
    assert not (await h.engine.decide(req(1))).allowed  # refused again: no second announcement
    assert [a["kind"] for a in await h.alerts()] == ["blocked"]

    h.source.replace(
        policy(plan("p", metered("requests", 10)), grants=(grant("g", "requests", 3),))
    )
    assert (await h.engine.decide(req(1))).allowed  # paid by the grant
    assert [a["kind"] for a in await h.alerts()] == ["blocked", "resumed"]
    assert (await h.alerts())[1]["cause"] == "quota_exhausted"

    assert (await h.engine.decide(req(2))).allowed  # the grant's last 2
    assert not (await h.engine.decide(req(1))).allowed  # a new episode
    h.source.replace(
        policy(plan("p", metered("requests", 20)), grants=(grant("g", "requests", 3),))
    )
    assert (await h.engine.decide(req(1))).allowed  # the limit was raised
    assert [a["kind"] for a in await h.alerts()] == ["blocked", "resumed", "blocked", "resumed"]


async def test_thresholds_are_armed_again_when_the_limit_changes(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("requests", 10, thresholds=(50,)))
    h = make_harness(redis, policy(p), key_prefix)
    assert (await h.engine.decide(req(6))).allowed  # 60 % of 10
    assert (await h.engine.decide(req(1))).allowed  # nothing new
    h.source.replace(policy(plan("p", metered("requests", 12, thresholds=(50,)))))
    assert (await h.engine.decide(req(1))).allowed  # 8 of 12: 50 % of the new limit
    assert (await h.engine.decide(req(1))).allowed  # nothing new
    assert _seen(await h.alerts()) == [
        ("threshold", "50", "6", "10"),
        ("threshold", "50", "8", "12"),
    ]


async def test_a_counter_alerted_before_limits_were_kept_is_not_alerted_again(
    redis: Redis, key_prefix: str
) -> None:
    """Counters written by an earlier version hold 'a50' = 1: taken as fired, not re-fired."""
    h = make_harness(
        redis, policy(plan("p", metered("requests", 10, thresholds=(50,)))), key_prefix
    )
    assert (await h.engine.decide(req(6))).allowed
    [quota] = [k async for k in redis.scan_iter(match=f"{key_prefix}:*:q:*")]
    await redis.hset(quota, "a50", "1")
    assert (await h.engine.decide(req(1))).allowed
    assert len(await h.alerts()) == 1
    assert await redis.hget(quota, "a50") == b"10"


async def _announce_resets(h: Harness, at: datetime) -> int:
    announcer = ResetAnnouncer(redis=h.redis, keys=h.store.keys, clock=ManualClock(at))
    return await announcer.run_once()


async def test_a_reset_ends_the_block_and_says_so_once(redis: Redis, key_prefix: str) -> None:
    """Blocked by a daily quota: nothing is announced while the day lasts; once it is over
    one 'resumed' (cause, the old window, used 0), however often the announcer runs."""
    h = make_harness(redis, policy(plan("p", metered("requests", 2))), key_prefix)
    assert [(await h.engine.decide(req())).outcome for _ in range(4)] == [
        Outcome.ALLOWED,
        Outcome.ALLOWED,
        Outcome.QUOTA_EXHAUSTED,
        Outcome.QUOTA_EXHAUSTED,
    ]
    blocked = (await h.alerts())[-1]
    assert blocked["kind"] == "blocked"
    assert await _announce_resets(h, h.clock.now() + timedelta(hours=1)) == 0  # still today
    end = int(blocked["period_end_us"])
    day_after = h.clock.now() + timedelta(days=1)
    assert to_us(day_after) >= end
    assert await _announce_resets(h, day_after) == 1
    assert await _announce_resets(h, day_after) == 0  # once
    resumed = (await h.alerts())[-1]
    assert (resumed["kind"], resumed["cause"], resumed["feature"]) == (
        "resumed",
        "quota_exhausted",
        "requests",
    )
    assert (resumed["used"], resumed["limit"], resumed["time_us"]) == ("0", "2", str(end))
    assert resumed["period_start_us"] == blocked["period_start_us"]
    h.clock.set(day_after)  # the new window admits again; a new block is a new episode
    assert [(await h.engine.decide(req())).allowed for _ in range(3)] == [True, True, False]
    assert [a["kind"] for a in await h.alerts()].count("blocked") == 2


async def test_an_episode_a_raised_cap_ended_is_not_announced_again_at_the_reset(
    redis: Redis, key_prefix: str
) -> None:
    p = plan("p", metered("requests", None), spend_cap=cap(6_000))
    h = make_harness(redis, policy(p, prices=(flat("requests", 3_000),)), key_prefix)
    assert [(await h.engine.decide(req())).allowed for _ in range(3)] == [True, True, False]
    raised = plan("p", metered("requests", None), spend_cap=cap(9_000))
    h.source.replace(policy(raised, prices=(flat("requests", 3_000),)))
    assert (await h.engine.decide(req())).allowed  # resumed by the raise
    assert [a["kind"] for a in await h.alerts()] == ["blocked", "resumed"]
    assert await _announce_resets(h, h.clock.now() + timedelta(days=62)) == 0


def _rated(h_redis: Redis, key_prefix: str) -> Harness:
    p = plan("p", metered("requests", None), rates=(rate("requests", 2),))
    return make_harness(h_redis, policy(p), key_prefix)


async def _hammer(h: Harness, seconds: float, step: float = 0.5) -> list[Outcome]:
    """Three requests every `step` seconds for `seconds` (a 2/s limit refuses some each time)."""
    outcomes = []
    for _ in range(round(seconds / step)):
        outcomes += [(await h.engine.decide(req())).outcome for _ in range(3)]
        h.clock.advance(timedelta(seconds=step))
    return outcomes


async def test_sustained_rate_limiting_is_a_block_once_and_resumes_after_a_quiet_spell(
    redis: Redis, key_prefix: str
) -> None:
    h = _rated(redis, key_prefix)
    start = h.clock.now()
    outcomes = await _hammer(h, 9.5)
    assert Outcome.RATE_LIMITED in outcomes and Outcome.ALLOWED in outcomes
    assert await h.alerts() == []  # refused for 9.5 s: a burst, not yet a block
    outcomes = await _hammer(h, 20)  # refused on and on: sustained
    blocked = [a for a in await h.alerts() if a["kind"] == "blocked"]
    assert len(blocked) == 1, await h.alerts()  # once per episode
    b = blocked[0]
    assert (b["cause"], b["feature"], b["limit"]) == ("rate_limited", "requests", "2")
    assert int(b["period_start_us"]) == to_us(start)  # the run's first refusal
    assert (
        to_us(start + timedelta(seconds=10))
        <= int(b["time_us"])
        <= to_us(start + timedelta(seconds=11))
    )
    now = await BlockedReader(redis=h.redis, keys=h.store.keys).read(h.clock.now(), 10)
    assert now.count == 1 and now.episodes[0].cause == "rate_limited"
    assert now.episodes[0].until > h.clock.now()

    # refusals stop; a quiet spell of 10 s ends it (the worker says so, once)
    last = h.clock.now()
    assert await _announce_resets(h, last + timedelta(seconds=5)) == 0
    assert await _announce_resets(h, last + timedelta(seconds=11)) == 1
    assert await _announce_resets(h, last + timedelta(seconds=12)) == 0
    resumed = (await h.alerts())[-1]
    assert (resumed["kind"], resumed["cause"], resumed["feature"]) == (
        "resumed",
        "rate_limited",
        "requests",
    )
    assert resumed["period_start_us"] == b["period_start_us"]
    after = await BlockedReader(redis=h.redis, keys=h.store.keys).read(
        last + timedelta(seconds=11), 10
    )
    assert after.count == 0

    # a new run later is a new episode, announced once it is sustained again
    h.clock.advance(timedelta(seconds=30))
    await _hammer(h, 12)
    assert [a["kind"] for a in await h.alerts()] == ["blocked", "resumed", "blocked"]


async def test_bursts_with_quiet_spells_between_them_are_never_a_block(
    redis: Redis, key_prefix: str
) -> None:
    h = _rated(redis, key_prefix)
    for _ in range(4):  # 8 s of refusals, then 11 s without a request, four times
        assert Outcome.RATE_LIMITED in await _hammer(h, 8)
        h.clock.advance(timedelta(seconds=11))
    assert await h.alerts() == []
    assert await _announce_resets(h, h.clock.now() + timedelta(minutes=5)) == 0
