"""The loop's contract: run() survives Redis outages (paused by the injected sleep, healthy),
stop() ends it, and an unexpected error marks it unhealthy."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from gatekeeper.notify import AlertNotifier, NotifierSettings, generate_secret
from gatekeeper.store.keys import KeySpace
from tests.notify.helpers import endpoint, wall_clock


def _notifier(redis: Redis, prefix: str, sleep) -> AlertNotifier:  # type: ignore[no-untyped-def]
    return AlertNotifier(
        redis=redis,
        keys=KeySpace(prefix=prefix),
        endpoints=[endpoint("http://127.0.0.1:9/", generate_secret())],
        settings=NotifierSettings(),
        consumer="n1",
        clock=wall_clock(),
        sleep=sleep,
    )


async def test_redis_outage_is_retried_and_stop_ends_the_loop(key_prefix: str) -> None:
    async with asyncio.timeout(10):
        down = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        pauses: list[float] = []

        async def sleep(seconds: float) -> None:
            pauses.append(seconds)
            if len(pauses) == 3:
                n.stop()

        n = _notifier(down, key_prefix, sleep)
        await n.run()
        assert n.healthy and not n.running and n.consecutive_failures == 3
        assert pauses == sorted(pauses) and "ConnectionError" in (n.last_error or "")
        await down.aclose()


async def test_an_unexpected_error_marks_the_loop_unhealthy(redis: Redis, key_prefix: str) -> None:
    async with asyncio.timeout(10):
        n = _notifier(redis, key_prefix, asyncio.sleep)

        async def broken(block_ms: int | None = None) -> int:
            raise RuntimeError("bug")

        n.run_once = broken  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            await n.run()
        assert not n.healthy
