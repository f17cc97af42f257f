"""Last-used times of API keys: noted in memory at most once per interval, written in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from gatekeeper.clock import ManualClock
from gatekeeper.directory.key_usage import KeyUsage
from gatekeeper.store.keys import KeySpace
from tests.conftest import also_on_cluster

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)


@also_on_cluster()
async def test_uses_are_noted_coarsely_and_written_by_flush(redis: Redis, key_prefix: str) -> None:
    clock = ManualClock(T0)
    mono = [0.0]
    usage = KeyUsage(
        redis=redis,
        keys=KeySpace(prefix=key_prefix, partitions=4),
        clock=clock,
        interval_s=60,
        capacity=100,
        monotonic=lambda: mono[0],
    )
    for _ in range(1000):
        usage.touch("acme", "k1")
    usage.touch("acme", "k2")
    assert await usage.flush() == 2
    assert await usage.last_used("acme") == {"k1": int(T0.timestamp()), "k2": int(T0.timestamp())}
    clock.advance(timedelta(seconds=30))
    mono[0] += 30
    usage.touch("acme", "k1")  # within the interval: not noted again
    assert await usage.flush() == 0
    clock.advance(timedelta(seconds=31))
    mono[0] += 31
    usage.touch("acme", "k1")
    assert await usage.flush() == 1
    assert (await usage.last_used("acme"))["k1"] == int((T0 + timedelta(seconds=61)).timestamp())
