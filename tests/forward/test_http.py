"""HttpForwarder against a real local receiver: retries, Retry-After, dead letters, bounds."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from gatekeeper.clock import ManualClock
from gatekeeper.forward import (
    BATCH_CONTENT_TYPE,
    DeadLetter,
    ForwardUnavailable,
    HttpForwarder,
    SendResult,
    parse_retry_after,
)
from tests.forward.helpers import settings, validate
from tests.forward.receiver import Receiver, serve

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "specversion": "1.0",
            "id": f"d{i}.0",
            "source": "gatekeeper",
            "type": "io.gatekeeper.usage.v1",
            "subject": "acme",
            "time": "2026-11-24T12:00:00.000000Z",
            "datacontenttype": "application/json",
            "data": {"feature": "tokens", "quantity": i, "amount": "0.01", "amount_nano": 10**7},
        }
        for i in range(n)
    ]


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.dead: list[DeadLetter] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.dead.append(letter)


@pytest.fixture
async def rec() -> Recorder:
    return Recorder()


async def make(receiver: Receiver, rec: Recorder, **overrides: Any) -> AsyncIterator[HttpForwarder]:
    fwd = HttpForwarder(
        settings=settings(receiver.url, **overrides),
        dead_letter=rec.dead_letter,
        sleep=rec.sleep,
        clock=ManualClock(NOW),
        rng=random.Random(7),
    )
    try:
        yield fwd
    finally:
        await fwd.aclose()


async def test_batch_is_posted_as_cloudevents_batch_json(rec: Recorder) -> None:
    async with asyncio.timeout(10), serve(Receiver()) as r:
        async for fwd in make(r, rec):
            assert await fwd.send(events(3)) is SendResult.DELIVERED
        assert r.content_types == [BATCH_CONTENT_TYPE]
        body = json.loads(r.bodies[0])
        assert [validate(e).get_id() for e in body] == ["d0.0", "d1.0", "d2.0"]
        assert rec.sleeps == [] and rec.dead == []


@pytest.mark.parametrize("status", [503, 500, 502, 429, 408])
async def test_transient_status_is_retried_with_jittered_backoff(
    rec: Recorder, status: int
) -> None:
    async with asyncio.timeout(10), serve(Receiver(fail_first=3, fail_status=status)) as r:
        async for fwd in make(r, rec, max_attempts=4, backoff_base_ms=100, backoff_max_ms=250):
            assert await fwd.send(events(2)) is SendResult.DELIVERED
        assert r.requests == 4 and set(r.accepted) == {"d0.0", "d1.0"}
        ceilings = [0.1, 0.2, 0.25]  # base * 2**n, capped at the maximum
        assert len(rec.sleeps) == 3
        assert all(0 <= s <= c for s, c in zip(rec.sleeps, ceilings, strict=True))
        assert len(set(rec.sleeps)) == 3  # jittered, not fixed


async def test_retry_after_seconds_is_honoured(rec: Recorder) -> None:
    async with asyncio.timeout(10), serve(Receiver(fail_first=2, retry_after="7")) as r:
        async for fwd in make(r, rec, max_attempts=3):
            assert await fwd.send(events(1)) is SendResult.DELIVERED
    assert rec.sleeps == [7.0, 7.0]


async def test_retry_after_http_date_is_honoured_and_capped(rec: Recorder) -> None:
    later = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    async with asyncio.timeout(10), serve(Receiver(fail_first=1, retry_after=later)) as r:
        async for fwd in make(r, rec, max_attempts=3):
            assert await fwd.send(events(1)) is SendResult.DELIVERED
    assert rec.sleeps == [30.0]
    far = format_datetime(NOW + timedelta(hours=5), usegmt=True)
    rec.sleeps.clear()
    async with asyncio.timeout(10), serve(Receiver(fail_first=1, retry_after=far)) as r:
        async for fwd in make(r, rec, max_attempts=3, retry_after_max_s=60.0):
            assert await fwd.send(events(1)) is SendResult.DELIVERED
    assert rec.sleeps == [60.0]


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=5), usegmt=True), NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


async def test_max_attempts_bound_then_unavailable(rec: Recorder) -> None:
    async with asyncio.timeout(10), serve(Receiver(fail_first=100, retry_after="2")) as r:
        async for fwd in make(r, rec, max_attempts=3):
            with pytest.raises(ForwardUnavailable) as info:
                await fwd.send(events(2))
        assert r.requests == 3 and r.accepted == {}
    assert info.value.status == 503 and info.value.attempts == 3
    assert info.value.retry_after_s == 2.0
    assert rec.dead == []  # a transient outage never dead-letters


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
async def test_permanent_refusal_goes_to_dead_letter_once(rec: Recorder, status: int) -> None:
    async with asyncio.timeout(10), serve(Receiver(final_status=status)) as r:
        async for fwd in make(r, rec, max_attempts=5):
            assert await fwd.send(events(3)) is SendResult.DEAD_LETTERED
        assert r.requests == 1
    [letter] = rec.dead
    assert letter.status == status
    assert f"HTTP {status}" in letter.reason and "missing meter" in letter.reason
    assert [e["id"] for e in letter.events] == ["d0.0", "d1.0", "d2.0"]


async def test_connection_refused_is_retried_then_unavailable(rec: Recorder) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = Receiver(url=f"http://127.0.0.1:{port}/events")
    async with asyncio.timeout(10):
        async for fwd in make(r, rec, max_attempts=3):
            with pytest.raises(ForwardUnavailable) as info:
                await fwd.send(events(1))
    assert info.value.status is None and "Connect" in str(info.value)
    assert len(rec.sleeps) == 2


async def test_timeout_is_retried(rec: Recorder) -> None:
    async with asyncio.timeout(10), serve(Receiver(hang_s=0.5)) as r:
        async for fwd in make(r, rec, max_attempts=2, timeout_s=0.05):
            with pytest.raises(ForwardUnavailable, match="Timeout"):
                await fwd.send(events(1))
        assert r.requests == 2


async def test_bearer_token_is_sent(rec: Recorder) -> None:
    from gatekeeper.settings import Secret

    seen: list[str] = []
    r = Receiver()
    original = r.handle

    async def handle(request: Any) -> Any:
        seen.append(request.headers.get("Authorization", ""))
        return await original(request)

    r.handle = handle  # type: ignore[method-assign]
    async with asyncio.timeout(10), serve(r):
        async for fwd in make(r, rec, auth_token=Secret("s3cr3t")):
            await fwd.send(events(1))
    assert seen == ["Bearer s3cr3t"]
    assert "s3cr3t" not in repr(settings(r.url, auth_token=Secret("s3cr3t")))
