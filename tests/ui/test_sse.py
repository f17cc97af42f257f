"""SSE endpoints on a bare aiohttp app: framing, scope, live pushes, disconnect, shutdown.

The data sources are injected coroutines; new usage and alerts come from real Redis streams
through a real StreamWatch. Authentication through the real API is covered in test_live_api.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from gatekeeper.events import AlertEvent
from gatekeeper.http.auth import ACTOR
from gatekeeper.http.sse import EventStreams, StreamWatch, sse_comment, sse_event
from gatekeeper.store.keys import KeySpace
from tests.e2e.harness import free_port
from tests.ui.sse_client import EventReader

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class FakeActor:
    operator: bool
    customer_id: str | None = None

    def may_see(self, customer_id: str) -> bool:
        return self.operator or customer_id == self.customer_id


@dataclass
class Sources:
    usage_calls: int = 0
    known: set[str] = field(default_factory=lambda: {"acme", "globex"})
    recent: list[dict[str, object]] = field(default_factory=list)
    stats_fail: bool = False

    async def usage(self, customer: str) -> Mapping[str, object] | None:
        if customer not in self.known:
            return None
        self.usage_calls += 1
        return {"customer": customer, "features": [], "n": self.usage_calls}

    async def stats(self) -> Mapping[str, object]:
        if self.stats_fail:
            raise RedisConnectionError("down")
        return {"rates": {"allowed": 1.0}}

    async def recent_alerts(self, customer: str) -> Sequence[Mapping[str, object]]:
        return list(self.recent)


@dataclass
class Server:
    url: str
    runner: web.AppRunner
    streams: EventStreams
    watch: StreamWatch
    sources: Sources
    keys: KeySpace


def _alert_json(event: AlertEvent) -> Mapping[str, object]:
    return {"id": event.id, "customer": event.customer, "kind": event.kind.value}


@contextlib.asynccontextmanager
async def serve(redis: Redis, prefix: str, **options: float) -> AsyncIterator[Server]:
    keys = KeySpace(prefix=prefix, partitions=1)  # every customer shares one partition
    sources = Sources()
    watch = StreamWatch(redis=redis, keys=keys, block_ms=200)
    streams = EventStreams(
        stats=sources.stats,
        usage=sources.usage,
        recent_alerts=sources.recent_alerts,
        alert_json=_alert_json,
        watch=watch,
        **options,  # type: ignore[arg-type]
    )

    @web.middleware
    async def actor(request: web.Request, handler: Handler) -> web.StreamResponse:
        who = request.headers.get("x-test-actor", "operator")
        request[ACTOR] = (  # type: ignore[assignment]
            FakeActor(True) if who == "operator" else FakeActor(False, who.split(":", 1)[1])
        )
        return await handler(request)

    app = web.Application(middlewares=[actor])
    streams.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    task = asyncio.create_task(watch.run())
    try:
        yield Server(f"http://127.0.0.1:{port}", runner, streams, watch, sources, keys)
    finally:
        watch.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()


@contextlib.asynccontextmanager
async def stream(url: str, actor: str = "operator") -> AsyncIterator[EventReader]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"x-test-actor": actor}) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"].startswith("no-cache")
        yield EventReader(response)


async def _until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def _usage_entry(customer: str) -> dict[str, str]:
    return {"id": f"e-{time.monotonic_ns()}", "type": "usage", "customer": customer}


def _alert_entry(customer: str, alert_id: str) -> dict[str, str]:
    return {
        "id": alert_id,
        "kind": "threshold",
        "customer": customer,
        "plan": "pro",
        "feature": "requests",
        "threshold": "80",
        "used": "8",
        "limit": "10",
        "period_start_us": "0",
        "period_end_us": "1",
        "time_us": "1",
        "decision_id": "d1",
    }


def test_framing() -> None:
    assert sse_event("usage", {"b": 1, "a": "x\ny"}) == (
        b'event: usage\ndata: {"a":"x\\ny","b":1}\n\n'
    )
    assert sse_event("alert", [1], event_id="7") == b"id: 7\nevent: alert\ndata: [1]\n\n"
    assert sse_comment("keep-alive") == b": keep-alive\n\n"
    for bad in ("two\nlines", "a:b", ""):
        if bad:
            with pytest.raises(ValueError, match="bad SSE event"):
                sse_event(bad, {})


async def test_customer_stream_pushes_usage_on_new_events_and_alerts(
    redis: Redis, key_prefix: str
) -> None:
    async with serve(redis, key_prefix, usage_interval_s=30.0, min_gap_s=0.05) as srv:
        srv.sources.recent = [{"id": "old-2"}, {"id": "old-1"}]  # newest first
        async with stream(f"{srv.url}/v1/customers/acme/stream", "customer:acme") as events:
            first = await events.next()
            assert first.event == "usage" and first.json()["n"] == 1
            assert events.retry == 2000
            assert [(await events.next()).json()["id"] for _ in range(2)] == ["old-1", "old-2"]
            await _until(lambda: srv.watch.following("acme"))
            stream_key = srv.keys.usage_stream(0)
            # another customer's usage in the same partition pushes nothing
            await redis.xadd(stream_key, _usage_entry("globex"))
            with pytest.raises(TimeoutError):
                await events.next(timeout=0.8)
            # this customer's usage is pushed well before the 30 s refresh
            started = time.monotonic()
            await redis.xadd(stream_key, _usage_entry("acme"))
            pushed = await events.next_of("usage", timeout=2.0)
            assert pushed.json()["n"] == 2 and time.monotonic() - started < 2.0
            await redis.xadd(srv.keys.alert_stream(0), _alert_entry("globex", "a-other"))
            await redis.xadd(srv.keys.alert_stream(0), _alert_entry("acme", "a-mine"))
            alert = await events.next_of("alert", timeout=2.0)
            assert alert.json() == {"id": "a-mine", "customer": "acme", "kind": "threshold"}


async def test_customer_stream_refreshes_periodically(redis: Redis, key_prefix: str) -> None:
    async with (
        serve(redis, key_prefix, usage_interval_s=0.3) as srv,
        stream(f"{srv.url}/v1/customers/globex/stream") as events,
    ):
        numbers = [(await events.next_of("usage", timeout=2.0)).json()["n"] for _ in range(3)]
        assert numbers == [1, 2, 3]


async def test_operator_stream_and_heartbeat(redis: Redis, key_prefix: str) -> None:
    async with (
        serve(redis, key_prefix, stats_interval_s=0.1, heartbeat_s=0.2) as srv,
        stream(f"{srv.url}/v1/stream") as events,
    ):
        for _ in range(2):
            assert (await events.next()).json() == {"rates": {"allowed": 1.0}}
        srv.sources.stats_fail = True  # no data: the stream stays open with heartbeats
        with pytest.raises(TimeoutError):
            await events.next_of("stats", timeout=0.4)
        await _until(lambda: "keep-alive" in events.comments, timeout=2.0)
        srv.sources.stats_fail = False
        assert (await events.next_of("stats", timeout=2.0)).event == "stats"


@pytest.mark.parametrize(
    ("path", "actor", "status"),
    [
        ("/v1/stream", "customer:acme", 403),
        ("/v1/customers/globex/stream", "customer:acme", 404),
        ("/v1/customers/nobody/stream", "operator", 404),
    ],
)
async def test_scope(redis: Redis, key_prefix: str, path: str, actor: str, status: int) -> None:
    async with (
        serve(redis, key_prefix) as srv,
        aiohttp.ClientSession() as session,
        session.get(srv.url + path, headers={"x-test-actor": actor}) as response,
    ):
        assert response.status == status
        assert response.headers["content-type"].startswith("application/problem+json")
        assert (await response.json())["status"] == status
        assert srv.streams.open_streams == 0


async def test_client_disconnect_ends_the_stream(redis: Redis, key_prefix: str) -> None:
    async with serve(redis, key_prefix, usage_interval_s=30.0) as srv:
        async with stream(f"{srv.url}/v1/customers/acme/stream") as events:
            await events.next_of("usage")
            async with stream(f"{srv.url}/v1/stream") as op:
                await op.next_of("stats")
                assert srv.streams.open_streams == 2 and srv.watch.watchers == 1
        await _until(lambda: srv.streams.open_streams == 0, timeout=2.0)
        assert srv.watch.watchers == 0


async def test_shutdown_ends_open_streams_promptly(redis: Redis, key_prefix: str) -> None:
    async with serve(redis, key_prefix, usage_interval_s=30.0) as srv:
        async with (
            stream(f"{srv.url}/v1/customers/acme/stream") as events,
            stream(f"{srv.url}/v1/stream") as op,
        ):
            await events.next_of("usage")
            await op.next_of("stats")
            started = time.monotonic()
            await srv.runner.cleanup()  # aiohttp's default would wait 60 s for handlers
            assert time.monotonic() - started < 3.0
            for reader in (events, op):
                with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                    while True:
                        await reader.next(timeout=2.0)
        assert srv.streams.open_streams == 0
