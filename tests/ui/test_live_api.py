"""The dashboard's live data through a real gatekeeper App: auth, statistics, usage pushes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from gatekeeper.app import App
from tests.conftest import RedisTarget, also_on_cluster
from tests.ui.conftest import ADMIN, HOBBYIST_KEY, chat, following, start_app
from tests.ui.sse_client import EventReader


@contextlib.asynccontextmanager
async def opened(url: str, **kw: object) -> AsyncIterator[EventReader]:
    async with aiohttp.ClientSession() as session, session.get(url, **kw) as r:  # type: ignore[arg-type]
        assert r.status == 200, await r.text()
        yield EventReader(r)


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/v1/stream", None, 401),
        ("/v1/stream", "not-a-token", 401),
        ("/v1/stream", HOBBYIST_KEY, 403),
        ("/v1/customers/busy/stream", HOBBYIST_KEY, 404),
        ("/v1/customers/hobbyist/stream", None, 401),
        ("/v1/customers/nobody/stream", ADMIN, 404),
    ],
)
async def test_stream_access(app: App, path: str, token: str | None, status: int) -> None:
    query = {"access_token": token} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{app.http_port}{path}", params=query) as r,
    ):
        assert r.status == status
        assert r.content_type == "application/problem+json"


async def test_bearer_header_works_too(app: App) -> None:
    url = f"http://127.0.0.1:{app.http_port}/v1/customers/hobbyist/stream"
    async with opened(url, headers={"authorization": f"Bearer {HOBBYIST_KEY}"}) as events:
        assert (await events.next_of("usage")).json()["customer"] == "hobbyist"


def _chat_used(usage: dict) -> int:  # type: ignore[type-arg]
    return next(f["used"] for f in usage["features"] if f["feature"] == "chat_requests")


@also_on_cluster()
async def test_customer_usage_is_pushed_after_decisions(app: App) -> None:
    url = f"http://127.0.0.1:{app.http_port}/v1/customers/hobbyist/stream"
    async with opened(url, params={"access_token": HOBBYIST_KEY}) as events:
        first = (await events.next_of("usage")).json()
        assert first["customer"] == "hobbyist" and _chat_used(first) == 0
        await following(app, "hobbyist")
        started = time.monotonic()
        assert await chat(app, HOBBYIST_KEY, 2) == [200, 200]
        used = 0
        while used < 2:
            used = _chat_used((await events.next_of("usage", timeout=2.5)).json())
        assert time.monotonic() - started < 2.0


@also_on_cluster()
async def test_operator_stream_counts_decisions_of_this_process(app: App) -> None:
    statuses = await chat(app, HOBBYIST_KEY, 7)  # 5 a day: 5 admitted, 2 denied (quota)
    assert statuses == [200] * 5 + [429] * 2
    await chat(app, "gk-test-nobody", 1)  # unauthenticated
    url = f"http://127.0.0.1:{app.http_port}/v1/stream"
    async with opened(url, params={"access_token": ADMIN}) as events:
        async with asyncio.timeout(5):  # flushed within a second, shown once that second ends
            while True:
                stats = (await events.next_of("stats")).json()
                if sum(stats["series"].get("allowed", [])) >= 5 and stats["denials"]:
                    break
        assert sum(stats["series"]["allowed"]) == 5
        assert stats["denials"] == {"quota": 2, "unauthenticated": 1}
        assert stats["top_customers"][0] == {"customer": "hobbyist", "decisions": 7, "denied": 2}
        assert stats["lag"]["group"] == "gatekeeper-billing"
        assert stats["lag"]["length"] >= 5  # the admitted usage events, not yet billed
        mine = [(a["kind"], a["threshold"]) for a in stats["alerts"] if a["customer"] == "hobbyist"]
        # newest first: the first refusal's block, then the thresholds
        assert mine == [("blocked", 100), ("threshold", 100), ("threshold", 80)]


@also_on_cluster()
async def test_serve_stops_promptly_with_streams_open(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path
) -> None:
    app = await start_app(redis_target, key_prefix, tmp_path)
    stopped = False
    base = f"http://127.0.0.1:{app.http_port}/v1"
    try:
        async with (
            opened(f"{base}/customers/hobbyist/stream", params={"access_token": HOBBYIST_KEY}) as a,
            opened(f"{base}/stream", params={"access_token": ADMIN}) as b,
        ):
            await a.next_of("usage")
            await b.next_of("stats")
            started = time.monotonic()
            await app.stop(5.0)
            stopped = True
            assert time.monotonic() - started < 3.0
            for events in (a, b):
                with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                    while True:
                        await events.next(timeout=2.0)
    finally:
        if not stopped:
            await app.stop(0.2)
