"""Exactness under concurrency: 4 OS processes hammer customers through the real engine, on one
server and on the local Redis Cluster (tests/engine/conftest.py)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from gatekeeper.store.connection import autopipeline_of
from gatekeeper.store.localcluster import LocalCluster
from tests.conftest import RedisTarget
from tests.engine.harness import make_harness
from tests.engine.workers import MANY, SPEND_CAP_NANO, run_batch, scenario

PROCESSES = 4


def _fan_out(
    target: RedisTarget, prefix: str, name: str, total: int, *, autopipeline: bool = True
) -> list[tuple[bool, int]]:
    """`total` concurrent decisions from PROCESSES processes (auto-pipelined by default)."""
    per = total // PROCESSES
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=ctx) as pool:
        futures = [
            pool.submit(
                run_batch, target.url, prefix, name, per, seed, autopipeline, target.cluster
            )
            for seed in range(PROCESSES)
        ]
        return [r for f in futures for r in f.result(timeout=120)]


def _autopipelined(redis: Redis) -> bool:
    """The decision path under test: the one of the `redis` fixture (tests/engine/conftest.py)."""
    return autopipeline_of(redis) is not None


@pytest.mark.slow
async def test_hard_limit_of_100_admits_exactly_100_of_1000(
    redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> None:
    results = _fan_out(
        redis_target, key_prefix, "hard100", 1_000, autopipeline=_autopipelined(redis)
    )
    assert len(results) == 1_000
    assert sum(admitted for admitted, _ in results) == 100
    h = make_harness(redis, scenario("hard100"), key_prefix)
    assert len(await h.events()) == 100


@pytest.mark.slow
async def test_spend_cap_never_overshoots_and_events_sum_to_spend(
    redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> None:
    results = _fan_out(redis_target, key_prefix, "spend", 1_000, autopipeline=_autopipelined(redis))
    admitted_cost = sum(cost for admitted, cost in results if admitted)
    h = make_harness(redis, scenario("spend"), key_prefix)
    spend_keys = [k async for k in redis.scan_iter(match=f"{key_prefix}:*:s:cust:*")]
    assert len(spend_keys) == 1
    recorded = int(await redis.hget(spend_keys[0], "u"))
    events = await h.events()
    assert 0 < recorded <= SPEND_CAP_NANO
    assert sum(int(e["amount_nano"]) for e in events) == recorded == admitted_cost
    assert len({e["decision_id"] for e in events}) == sum(a for a, _ in results)
    # the cap was actually reached: a denial happened and little headroom is left
    assert any(not admitted for admitted, _ in results)
    assert SPEND_CAP_NANO - recorded < 70_000_000 + 3 * 130_000_000 + 15_000_000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["thresholds", "soft_thresholds"])
async def test_500_concurrent_decisions_fire_each_threshold_once(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, name: str
) -> None:
    results = _fan_out(redis_target, key_prefix, name, 500, autopipeline=_autopipelined(redis))
    admitted = sum(a for a, _ in results)
    assert admitted == (400 if name == "thresholds" else 500)
    h = make_harness(redis, scenario(name), key_prefix)
    alerts = await h.alerts()
    by_threshold = sorted((a["kind"], int(a["threshold"])) for a in alerts)
    expected = [("threshold", 50), ("threshold", 80), ("threshold", 100)]
    if name == "soft_thresholds":
        expected.insert(0, ("overage", 100))
    else:  # 100 refused, concurrently: one block episode, announced once
        expected.insert(0, ("blocked", 100))
    assert by_threshold == sorted(expected)
    assert len(await h.events()) == admitted


@pytest.mark.slow
async def test_hard_limits_stay_exact_for_customers_on_every_primary(
    request: pytest.FixtureRequest, redis: Redis, redis_target: RedisTarget, key_prefix: str
) -> None:
    """12 customers, 200 decisions each from 4 processes at once: exactly 100 admitted each.
    On the cluster their partitions sit on all three primaries."""
    h = make_harness(redis, scenario("many"), key_prefix)
    if redis_target.cluster:
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        owners = cluster.slot_owners()
        used = {owners[key_slot(h.usage_stream(c).encode())] for c in MANY}
        assert used == set(cluster.primary_ports)
    results = _fan_out(
        redis_target, key_prefix, "many", 200 * len(MANY), autopipeline=_autopipelined(redis)
    )
    assert sum(admitted for admitted, _ in results) == 100 * len(MANY)
    for customer in MANY:
        assert len(await h.events(customer)) == 100
