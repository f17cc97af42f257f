"""Server-Sent Events for the dashboard: `GET /v1/stream` and `GET /v1/customers/{id}/stream`.

- `/v1/stream` (operators): event `stats` (the StatsReader snapshot) every `stats_interval_s`.
- `/v1/customers/{id}/stream` (operators, or that customer): event `usage` (the usage JSON)
  at once, again soon after the customer's usage stream has new entries (at most one every
  `min_gap_s`) and at least every `usage_interval_s`; event `alert` for each alert of that
  customer (its recent ones first, then new ones as they are appended).

Every stream opens with a `retry:` hint, sends a `: keep-alive` comment when idle for
`heartbeat_s`, ends within `poll_s` when the client goes away, and ends at once when the
server shuts down (aiohttp's on_shutdown), so `AppRunner.cleanup()` never waits on a stream.

New usage and alert entries are noticed by one `StreamWatch` per process: a single blocking
XREAD over the partitions that have watchers, fanned out to subscriptions. A blocking read per
dashboard would hold one of the decision path's bounded pool connections per open tab.
Authentication is the API middleware's (it sets `request[ACTOR]`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gatekeeper.backoff import Backoff
from gatekeeper.events import AlertEvent
from gatekeeper.http.auth import ACTOR
from gatekeeper.http.problems import problem
from gatekeeper.loop import run_loop, transient_types
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.resp import reply_text

__all__ = ["EventStreams", "StreamWatch", "Subscription", "sse_comment", "sse_event"]

log = logging.getLogger(__name__)

_RETRY = Backoff(0.1, 5.0)  # the stream watch's Redis reads after a failure

UsageSource = Callable[[str], Awaitable[Mapping[str, object] | None]]
StatsSource = Callable[[], Awaitable[Mapping[str, object]]]
AlertSource = Callable[[str], Awaitable[Sequence[Mapping[str, object]]]]
AlertJson = Callable[[AlertEvent], Mapping[str, object]]


class Caller(Protocol):
    """What the API middleware puts in `request[ACTOR]`."""

    @property
    def operator(self) -> bool: ...

    def may_see(self, customer_id: str) -> bool: ...


def sse_event(event: str, data: object, *, event_id: str | None = None) -> bytes:
    """One SSE message: `data` as compact JSON (never spans lines), named `event`."""
    if any(c in event for c in "\r\n:") or (event_id and any(c in event_id for c in "\r\n")):
        raise ValueError(f"bad SSE event name or id: {event!r}")
    head = f"id: {event_id}\n" if event_id else ""
    body = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


def sse_comment(text: str) -> bytes:
    """A comment line (ignored by EventSource): used as a heartbeat."""
    return "".join(f": {line}\n" for line in text.splitlines() or [""]).encode() + b"\n"


class Subscription:
    """One watcher of one customer: `changed` is set by new usage; alerts queue up (bounded)."""

    def __init__(self, customer: str) -> None:
        self.customer = customer
        self.changed = asyncio.Event()
        self.alerts: deque[AlertEvent] = deque(maxlen=100)


class StreamWatch:
    """Follows the usage and alert streams of the partitions somebody watches (one XREAD).

    Loops (STYLE rule 7): `run()` until `stop()`; `run_once()` reads once. A Redis error is
    logged and retried with backoff; anything else ends `run()` (the supervisor reports it).
    """

    def __init__(self, *, redis: Redis, keys: KeySpace, block_ms: int = 500) -> None:
        self._redis = redis
        self._keys = keys
        self._block_ms = block_ms
        self._subs: dict[str, set[Subscription]] = {}
        self._last: dict[str, str] = {}  # stream -> last id seen
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, customer: str) -> Iterator[Subscription]:
        sub = Subscription(customer)
        self._subs.setdefault(customer, set()).add(sub)
        self._wake.set()
        try:
            yield sub
        finally:
            subs = self._subs.get(customer)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[customer]

    @property
    def watchers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def following(self, customer: str) -> bool:
        """True once entries appended for `customer` from now on are certain to be noticed."""
        return self._keys.usage_stream(self._keys.partition(customer)) in self._last

    async def _streams(self) -> dict[str, str]:
        wanted: list[str] = []
        for partition in sorted({self._keys.partition(c) for c in self._subs}):
            wanted += [self._keys.usage_stream(partition), self._keys.alert_stream(partition)]
        fresh = [s for s in wanted if s not in self._last]
        if fresh:  # start each newly watched stream at its current end, as a concrete id
            pipe = self._redis.pipeline(transaction=False)
            for stream in fresh:
                pipe.xrevrange(stream, count=1)
            for stream, reply in zip(fresh, await pipe.execute(), strict=True):
                self._last[stream] = reply_text(reply[0][0]) if reply else "0-0"
        self._last = {s: self._last[s] for s in wanted}
        return dict(self._last)

    async def run_once(self) -> int:
        """Read new entries once (blocking up to block_ms) and notify; returns entries read."""
        if not self._subs:
            self._last.clear()
            return 0
        streams = await self._streams()
        reply: Any = await self._redis.xread(streams, count=500, block=self._block_ms)  # type: ignore[arg-type]
        seen = 0
        for raw_stream, entries in reply or ():
            stream = reply_text(raw_stream)
            alerts = stream.endswith(":alerts")
            for entry_id, fields in entries:
                seen += 1
                self._last[stream] = reply_text(entry_id)
                customer = reply_text(fields.get(b"customer", fields.get("customer", b"")))
                subs = self._subs.get(customer)
                if not subs:
                    continue
                alert = self._alert(fields) if alerts else None
                for sub in subs:
                    if alert is not None:
                        sub.alerts.append(alert)
                    sub.changed.set()
        return seen

    @staticmethod
    def _alert(fields: Mapping[bytes | str, bytes | str]) -> AlertEvent | None:
        try:
            return AlertEvent.from_fields(fields)
        except ValueError as exc:
            log.warning("skipping an alert entry: %s", exc)
            return None

    async def run(self) -> None:
        await run_loop(
            "dashboard stream watch",
            self._step,
            stopping=self._stopped,
            transient=transient_types(RedisError, OSError),
            backoff=_RETRY,
        )

    async def _step(self) -> None:
        _raise_if_cancelled()
        if not self._subs:  # nobody watching: wait for a subscriber (or the stop)
            self._wake.clear()
            await self._wake.wait()
            return
        await self.run_once()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()


def _raise_if_cancelled() -> None:
    """redis-py (8.1) can swallow a cancellation that lands in a blocking read and return
    normally; a loop that went on would then never end (and App.stop would wait forever)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _Channel:
    """One open event stream: writes, heartbeats, and knows when to end."""

    def __init__(self, request: web.Request, response: web.StreamResponse, closing: asyncio.Event):
        self._request = request
        self._response = response
        self._closing = closing
        self.last_write = asyncio.get_running_loop().time()

    @property
    def open(self) -> bool:
        transport = self._request.transport
        return not self._closing.is_set() and transport is not None and not transport.is_closing()

    async def send(self, data: bytes) -> bool:
        """False once the client is gone (the caller then ends the stream)."""
        if not self.open:
            return False
        try:
            await self._response.write(data)
        except (ConnectionError, RuntimeError):  # reset by peer / writing after close
            return False
        self.last_write = asyncio.get_running_loop().time()
        return True

    async def wait(self, event: asyncio.Event | None, timeout_s: float, poll_s: float) -> bool:
        """Wait until `event` is set (True) or `timeout_s` passed (False); returns early (False)
        when the stream should end, checking the connection every `poll_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.open:
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiters = [asyncio.ensure_future(self._closing.wait())]
            if event is not None:
                waiters.append(asyncio.ensure_future(event.wait()))
            _, pending = await asyncio.wait(
                waiters, timeout=min(left, poll_s), return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if event is not None and event.is_set():
                return True
        return False


class EventStreams:
    """The two SSE endpoints; data sources are injected (tests pass plain coroutines)."""

    def __init__(
        self,
        *,
        stats: StatsSource,
        usage: UsageSource,
        recent_alerts: AlertSource,
        alert_json: AlertJson,
        watch: StreamWatch,
        stats_interval_s: float = 1.0,
        usage_interval_s: float = 2.0,
        min_gap_s: float = 0.2,
        heartbeat_s: float = 15.0,
        poll_s: float = 0.25,
        retry_ms: int = 2000,
    ) -> None:
        self._stats = stats
        self._usage = usage
        self._recent_alerts = recent_alerts
        self._alert_json = alert_json
        self._watch = watch
        self._stats_interval = stats_interval_s
        self._usage_interval = usage_interval_s
        self._min_gap = min_gap_s
        self._heartbeat = heartbeat_s
        self._poll = poll_s
        self._retry_ms = retry_ms
        self._closing = asyncio.Event()
        self.open_streams = 0

    def install(self, app: web.Application) -> None:
        app.router.add_get("/v1/stream", self.operator_stream)
        app.router.add_get("/v1/customers/{customer}/stream", self.customer_stream)
        app.on_shutdown.append(self._shutdown)

    async def _shutdown(self, app: web.Application) -> None:
        self._closing.set()

    async def _open(self, request: web.Request) -> tuple[web.StreamResponse, _Channel]:
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache, no-store",
                "x-accel-buffering": "no",  # tell reverse proxies not to buffer the stream
            }
        )
        await response.prepare(request)
        await response.write(f"retry: {self._retry_ms}\n\n".encode())
        return response, _Channel(request, response, self._closing)

    async def _beat(self, channel: _Channel) -> bool:
        if asyncio.get_running_loop().time() - channel.last_write < self._heartbeat:
            return True
        return await channel.send(sse_comment("keep-alive"))

    async def operator_stream(self, request: web.Request) -> web.StreamResponse:
        actor: Caller = request[ACTOR]
        if not actor.operator:
            return problem(403, "Forbidden", "the live statistics are for operator tokens")
        response, channel = await self._open(request)
        self.open_streams += 1
        try:
            while channel.open:
                try:
                    snapshot = await self._stats()
                except (RedisError, OSError) as exc:
                    log.warning("dashboard statistics unavailable: %s", exc)
                    if not await self._beat(channel):
                        break
                else:
                    if not await channel.send(sse_event("stats", snapshot)):
                        break
                await channel.wait(None, self._stats_interval, self._poll)
        finally:
            self.open_streams -= 1
        return response

    async def customer_stream(self, request: web.Request) -> web.StreamResponse:
        actor: Caller = request[ACTOR]
        customer = request.match_info["customer"]
        if not actor.may_see(customer):
            return problem(404, "Not found", "no such customer")
        try:
            usage = await self._usage(customer)
        except (RedisError, OSError) as exc:
            log.warning("usage of %s unavailable: %s", customer, exc)
            return problem(503, "Service unavailable", "usage cannot be read right now; retry")
        if usage is None:
            return problem(404, "Not found", "no such customer")
        response, channel = await self._open(request)
        self.open_streams += 1
        try:
            with self._watch.subscribe(customer) as sub:
                await self._follow(channel, sub, usage)
        finally:
            self.open_streams -= 1
        return response

    async def _follow(
        self, channel: _Channel, sub: Subscription, usage: Mapping[str, object] | None
    ) -> None:
        loop = asyncio.get_running_loop()
        if usage is not None and not await channel.send(sse_event("usage", usage)):
            return
        sent_at = loop.time()
        try:
            recent = await self._recent_alerts(sub.customer)
        except (RedisError, OSError) as exc:
            log.warning("recent alerts of %s unavailable: %s", sub.customer, exc)
            recent = ()
        for alert in reversed(recent):  # oldest first, like the live ones
            if not await channel.send(sse_event("alert", alert)):
                return
        while channel.open:
            due = self._usage_interval - (loop.time() - sent_at)
            changed = due > 0 and await channel.wait(sub.changed, due, self._poll)
            if changed:  # coalesce a burst of usage into one push
                await channel.wait(None, max(self._min_gap - (loop.time() - sent_at), 0), 1.0)
            sub.changed.clear()
            while sub.alerts:
                if not await channel.send(
                    sse_event("alert", self._alert_json(sub.alerts.popleft()))
                ):
                    return
            try:
                usage = await self._usage(sub.customer)
            except (RedisError, OSError) as exc:
                log.warning("usage of %s unavailable: %s", sub.customer, exc)
                usage = None
            sent_at = loop.time()
            if usage is not None:
                if not await channel.send(sse_event("usage", usage)):
                    return
            elif not await self._beat(channel):
                return
