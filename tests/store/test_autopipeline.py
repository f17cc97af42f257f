"""The auto-pipelining path against real Redis: ordering, timeouts, lost connections, restarts.

Failure tests run on a server the test starts (own_redis): it may kill its clients, flush its
scripts or restart it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time

import pytest
from redis.asyncio import Redis

from gatekeeper.errors import StoreUnavailable
from gatekeeper.store.autopipeline import AutoPipeline
from gatekeeper.store.embedded import EmbeddedRedis
from gatekeeper.store.endpoint import Endpoint
from gatekeeper.store.resp import encode_command
from gatekeeper.store.scripts import LuaScript
from tests.conftest import RedisTarget
from tests.e2e.harness import wait_for


def _script(source: str) -> LuaScript:
    return LuaScript(name="t", source=source, sha=hashlib.sha1(source.encode()).hexdigest())


def _pipe(url: str, *, connections: int = 2, timeout_s: float | None = 5.0) -> AutoPipeline:
    ep = Endpoint.from_url(url)
    assert ep is not None
    return AutoPipeline(dataclasses.replace(ep, timeout_s=timeout_s), connections=connections)


async def test_each_of_1000_concurrent_calls_gets_its_own_reply(
    redis_target: RedisTarget, key_prefix: str
) -> None:
    pipe = _pipe(redis_target.url)
    echo = _script("return {KEYS[1], ARGV[1]}")
    try:

        async def call(i: int) -> tuple[object, object]:
            if i % 2:
                return await pipe.command("ECHO", f"e{i}"), i
            return await echo.run_pipelined(pipe, [f"{key_prefix}:{{k}}:{i}"], [f"a{i}"]), i

        replies = await asyncio.gather(*(call(i) for i in range(1_000)))
        for reply, i in replies:
            if i % 2:
                assert reply == f"e{i}".encode()
            else:
                assert reply == [f"{key_prefix}:{{k}}:{i}".encode(), f"a{i}".encode()]
        assert pipe.connects == 2 and pipe.in_flight == 0
    finally:
        await pipe.aclose()


async def test_a_cancelled_call_does_not_shift_the_replies_of_the_others(
    redis_target: RedisTarget,
) -> None:
    pipe = _pipe(redis_target.url, connections=1)
    try:
        tasks = [asyncio.ensure_future(pipe.command("ECHO", str(i))) for i in range(50)]
        await asyncio.sleep(0)  # all written in one tick
        for t in tasks[::3]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for i, reply in enumerate(done):
            if i % 3 == 0:
                assert isinstance(reply, asyncio.CancelledError)
            else:
                assert reply == str(i).encode()
        assert await pipe.command("ECHO", "after") == b"after"
    finally:
        await pipe.aclose()


async def test_error_replies_map_like_redis_py(redis_target: RedisTarget) -> None:
    pipe = _pipe(redis_target.url)
    failing = _script("return redis.error_reply('ERR boom')")
    try:
        with pytest.raises(StoreUnavailable, match=r"redis error in t: .*boom") as err:
            await failing.run_pipelined(pipe, [], [])
        assert not err.value.transient  # a script error is not worth retrying or failing open
        assert await pipe.command("ECHO", "still fine") == b"still fine"
    finally:
        await pipe.aclose()


async def test_noscript_after_script_flush_loads_and_retries(own_redis: EmbeddedRedis) -> None:
    admin = Redis.from_url(own_redis.url)
    pipe = _pipe(own_redis.url)
    script = _script("return ARGV[1] .. '!'")
    try:
        assert await script.run_pipelined(pipe, [], ["a"]) == b"a!"
        await admin.script_flush()
        assert await admin.script_exists(script.sha) == [False]
        replies = await asyncio.gather(
            *(script.run_pipelined(pipe, [], [str(i)]) for i in range(100))
        )
        assert replies == [f"{i}!".encode() for i in range(100)]
        assert await admin.script_exists(script.sha) == [True]
    finally:
        await pipe.aclose()
        await admin.aclose()


async def test_a_call_unanswered_within_the_timeout_fails_and_the_next_reconnects(
    own_redis: EmbeddedRedis, key_prefix: str
) -> None:
    pipe = _pipe(own_redis.url, connections=1, timeout_s=0.3)
    try:
        assert await pipe.command("PING") == b"PONG"
        started = time.monotonic()
        # BLPOP holds its connection for 5 s: it and the call queued behind it time out
        blocked = asyncio.ensure_future(pipe.command("BLPOP", f"{key_prefix}:never", 5))
        behind = asyncio.ensure_future(pipe.command("ECHO", "behind"))
        for call in (blocked, behind):
            with pytest.raises(StoreUnavailable, match=r"timed out after 0\.3s") as err:
                await call
            assert err.value.transient
        assert 0.25 < time.monotonic() - started < 3.0
        assert await pipe.command("ECHO", "next") == b"next"
        assert pipe.connects == 2
    finally:
        await pipe.aclose()


async def test_killed_connections_fail_their_calls_in_flight_and_reconnect(
    own_redis: EmbeddedRedis, key_prefix: str
) -> None:
    admin = Redis.from_url(own_redis.url)
    pipe = _pipe(own_redis.url, connections=2)
    try:
        assert await asyncio.gather(pipe.command("PING"), pipe.command("PING")) == [b"PONG"] * 2
        in_flight = [
            asyncio.ensure_future(pipe.command("BLPOP", f"{key_prefix}:never", 10))
            for _ in range(6)
        ]
        assert await wait_for(lambda: pipe.in_flight == 6)
        await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        async with asyncio.timeout(3):  # never a hang
            results = await asyncio.gather(*in_flight, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) and r.transient for r in results), results
        assert await pipe.command("ECHO", "again") == b"again"
        assert await pipe.command("ECHO", "and again") == b"and again"
        assert pipe.connects == 4
    finally:
        await pipe.aclose()
        await admin.aclose()


async def test_redis_restart_mid_run(own_redis: EmbeddedRedis) -> None:
    """Calls in flight when Redis stops fail cleanly; calls after it is back succeed."""
    pipe = _pipe(own_redis.url)
    outcomes: list[str] = []
    stop = asyncio.Event()

    async def caller(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                reply = await pipe.command("ECHO", f"{n}.{i}")
                assert reply == f"{n}.{i}".encode()  # never another call's reply
                outcomes.append("ok")
            except StoreUnavailable as exc:
                assert exc.transient
                outcomes.append("unavailable")
                await asyncio.sleep(0.01)

    callers = [asyncio.ensure_future(caller(n)) for n in range(32)]
    try:
        assert await wait_for(lambda: outcomes.count("ok") > 200)
        await asyncio.to_thread(own_redis.stop)
        assert await wait_for(lambda: outcomes.count("unavailable") > 50)
        await asyncio.to_thread(own_redis.start)
        seen = len(outcomes)
        assert await wait_for(lambda: outcomes[seen:].count("ok") > 200, timeout_s=10)
    finally:
        stop.set()
        async with asyncio.timeout(5):  # every caller returns: nothing hangs
            await asyncio.gather(*callers)
        await pipe.aclose()


async def test_unreachable_redis_fails_fast_then_backs_off(own_redis: EmbeddedRedis) -> None:
    url = own_redis.url
    own_redis.stop()
    pipe = _pipe(url)
    try:
        with pytest.raises(StoreUnavailable, match="cannot connect"):
            await pipe.command("PING")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="reconnecting with backoff"):
            await pipe.command("PING")
        assert time.monotonic() - started < 0.5  # no connect attempt inside the backoff
        own_redis.start()
        assert await wait_for(lambda: _pings(pipe), timeout_s=5)
    finally:
        await pipe.aclose()


async def _pings(pipe: AutoPipeline) -> bool:
    try:
        return bool(await pipe.command("PING") == b"PONG")
    except StoreUnavailable:
        return False


async def test_closed_pipeline_refuses_calls(redis_target: RedisTarget) -> None:
    pipe = _pipe(redis_target.url)
    assert await pipe.command("PING") == b"PONG"
    await pipe.aclose()
    with pytest.raises(StoreUnavailable, match="closed"):
        await pipe.command("PING")


def test_uvloop_transports_over_tcp_and_unix(own_redis: EmbeddedRedis) -> None:
    """`gatekeeper serve` runs uvloop, whose transports are not asyncio.Transport subclasses."""
    import uvloop

    async def run(url: str) -> list[object]:
        pipe = _pipe(url)
        try:
            return list(await asyncio.gather(*(pipe.command("ECHO", str(i)) for i in range(200))))
        finally:
            await pipe.aclose()

    for url in (own_redis.url, f"unix://{own_redis.socket_path}?db=0"):
        assert uvloop.run(run(url)) == [str(i).encode() for i in range(200)]


async def test_execute_many_answers_in_order_and_a_lost_connection_raises_once(
    own_redis: EmbeddedRedis, key_prefix: str
) -> None:
    pipe = _pipe(own_redis.url, connections=1, timeout_s=0.3)
    try:
        key = f"{key_prefix}:n"
        calls = [encode_command(("INCR", key)) for _ in range(1_000)]
        assert await pipe.execute_many(calls, [key] * len(calls)) == list(range(1, 1_001))
        # a call that blocks past the timeout fails it and every call queued behind it: one
        # StoreUnavailable is raised, every other failure retrieved (no warning left behind)
        blocked = [encode_command(("BLPOP", f"{key_prefix}:never", 5)), *calls[:10]]
        with pytest.raises(StoreUnavailable, match="timed out"):
            await pipe.execute_many(blocked, [key] * len(blocked))
        assert await pipe.execute_many(calls[:2], [key, key]) == [1_001, 1_002]
    finally:
        await pipe.aclose()
