"""Auto-pipelining for the hot command: the Lua calls of concurrent decisions share writes.

Each call is appended to one of a few connections and its future queued; the bytes written in
one event-loop tick go out in one write (flushed by `call_soon`, so a call waits at most until
the loop has run what is already ready). Redis answers in order, so replies are matched to
calls first-in first-out. Measured on 2 cores: redis-py asyncio reaches ~20 % of the pipelined
EVALSHA ceiling, this path ~80 % (`gatekeeper bench --only engine`).

Failures behave as through redis-py (redis_store.py): a call not answered within the command
timeout (redis-py's socket_timeout, 5 s unless the URL says otherwise) fails with
StoreUnavailable and closes its connection; a lost connection fails every call in flight on it
with StoreUnavailable (never a hang, never another call's reply); the next call reconnects,
and after a failed connect calls fail fast until a backoff (50 ms doubling to 1 s) has passed.
A call is never retried once written: a Lua call whose reply was lost may have run.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import hiredis

from gatekeeper.backoff import Backoff, Jitter
from gatekeeper.errors import StoreUnavailable
from gatekeeper.store.endpoint import Endpoint
from gatekeeper.store.resp import ErrorReply, encode_command

__all__ = ["AutoPipeline", "Pipelined"]

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
RECONNECT = Backoff(BACKOFF_BASE_S, BACKOFF_CAP_S, Jitter.EQUAL)


class Pipelined(Protocol):
    """What the decision path sends through: AutoPipeline (one server) or ClusterAutoPipeline."""

    async def execute(self, data: bytes, key: str | bytes | None = None) -> Any: ...

    async def command(self, *args: bytes | str | int, key: str | bytes | None = None) -> Any: ...

    async def execute_many(
        self, data: Sequence[bytes], keys: Sequence[str | bytes | None]
    ) -> list[Any]: ...

    async def execute_then(
        self, data: bytes, then: bytes, key: str | bytes | None = None
    ) -> tuple[Any, Any]: ...

    @property
    def in_flight(self) -> int: ...

    async def aclose(self) -> None: ...


class _Connection(asyncio.Protocol):
    """One Redis connection: coalesced writes out, replies matched FIFO to waiting futures."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float | None) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._reader = hiredis.Reader(replyError=ErrorReply)
        self._transport: asyncio.Transport | None = None
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass (`gatekeeper serve` runs
        # uvloop): an isinstance check here failed every connection there
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        try:
            while (reply := reader.gets()) is not False:
                future = pending.popleft()[0]
                if not future.done():  # cancelled by its caller: drop the reply
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            # unparseable stream, or a reply nobody asked for: nothing later can be matched
            self.abort(StoreUnavailable(f"redis protocol error: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail_all(StoreUnavailable(f"redis unavailable: connection lost{reason}"))

    # used by AutoPipeline
    def send(self, data: bytes) -> asyncio.Future[Any]:
        """Queue one encoded command; the future gets its reply (an ErrorReply for `-ERR`)."""
        if self.closed:
            raise StoreUnavailable("redis unavailable: connection lost", sent=False)
        future = self._loop.create_future()
        self._pending.append((future, self._loop.time()))
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        if self._timer is None and self._timeout_s is not None:
            self._timer = self._loop.call_later(self._timeout_s, self._check_timeout)
        return future

    def abort(self, error: StoreUnavailable) -> None:
        """Fail every call in flight with `error` and drop the connection."""
        self._fail_all(error)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self._fail_all(StoreUnavailable("redis unavailable: client closed"))
        if self._transport is not None:
            self._transport.close()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed or not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        assert self._transport is not None
        self._transport.write(data)

    def _check_timeout(self) -> None:
        self._timer = None
        if self.closed or not self._pending or self._timeout_s is None:
            return
        waited = self._loop.time() - self._pending[0][1]
        if waited >= self._timeout_s:
            log.warning("redis call unanswered after %.3fs: dropping the connection", waited)
            self.abort(StoreUnavailable(f"redis unavailable: timed out after {self._timeout_s}s"))
            return
        self._timer = self._loop.call_later(self._timeout_s - waited, self._check_timeout)

    def _fail_all(self, error: StoreUnavailable) -> None:
        self.closed = True
        self._out.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, deque()
        for future, _ in pending:
            if not future.done():
                future.set_exception(error)


class AutoPipeline:
    """A few connections to one Redis, each pipelining the calls made on it.

    `execute()` raises StoreUnavailable (see the module docstring); error replies come back
    as ErrorReply values for the caller to interpret (NOSCRIPT, ...).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        connections: int = 2,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be >= 1")
        self.endpoint = endpoint
        self._slots: list[_Connection | None] = [None] * connections
        self._connecting: list[asyncio.Task[_Connection] | None] = [None] * connections
        self._next = 0
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""
        self._jitter = jitter
        self._closed = False
        self.connects = 0  # successful connects so far (tests, metrics)

    async def execute(self, data: bytes, key: str | bytes | None = None) -> Any:
        """Send one encoded command (see resp.encode_command) and return its parsed reply.

        `key` (the command's first key) routes the call on a Cluster (ClusterAutoPipeline);
        one server ignores it."""
        i = self._next
        self._next = (i + 1) % len(self._slots)
        conn = self._slots[i]
        if conn is None or conn.closed:
            conn = await self._connection(i)
        return await conn.send(data)

    async def execute_pair(self, first: bytes, second: bytes) -> tuple[Any, Any]:
        """Two encoded commands back to back on one connection, nothing between them (ASKING
        and the command it applies to); both replies."""
        i = self._next
        self._next = (i + 1) % len(self._slots)
        conn = self._slots[i]
        if conn is None or conn.closed:
            conn = await self._connection(i)
        replies = await asyncio.gather(conn.send(first), conn.send(second))
        return replies[0], replies[1]

    async def command(self, *args: bytes | str | int, key: str | bytes | None = None) -> Any:
        return await self.execute(encode_command(args))

    async def execute_then(
        self, data: bytes, then: bytes, key: str | bytes | None = None
    ) -> tuple[Any, Any]:
        """`data`, then `then` right behind it on the same connection (a WAIT that must follow
        the write it waits for); both replies."""
        return await self.execute_pair(data, then)

    async def execute_many(
        self, data: Sequence[bytes], keys: Sequence[str | bytes | None]
    ) -> list[Any]:
        """Many encoded commands (bulk writes: seeding, imports) on one connection, in order,
        without a task per call; every reply (error replies as ErrorReply values). `keys`
        route them on a Cluster; one server ignores them."""
        if not data:
            return []
        i = self._next
        self._next = (i + 1) % len(self._slots)
        conn = self._slots[i]
        if conn is None or conn.closed:
            conn = await self._connection(i)
        futures = [conn.send(d) for d in data]
        replies: list[Any] = []
        lost: StoreUnavailable | None = None
        for future in futures:  # in order, as they come (cheaper than gather per call)
            try:
                replies.append(await future)
            except StoreUnavailable as exc:  # a lost connection fails every call still waiting
                lost = lost or exc
        if lost is not None:
            raise lost
        return replies

    @property
    def in_flight(self) -> int:
        return sum(c.in_flight for c in self._slots if c is not None)

    async def aclose(self) -> None:
        self._closed = True
        for task in self._connecting:
            if task is not None:
                task.cancel()
        for i, conn in enumerate(self._slots):
            if conn is not None:
                conn.close()
            self._slots[i] = None
        # let the transports finish closing inside this loop
        await asyncio.sleep(0)

    async def _connection(self, i: int) -> _Connection:
        if self._closed:
            raise StoreUnavailable("redis unavailable: client closed", sent=False)
        task = self._connecting[i]
        if task is None:
            loop = asyncio.get_running_loop()
            if loop.time() < self._retry_at:
                raise StoreUnavailable(
                    f"redis unavailable: {self.endpoint.where}: {self._last_error} "
                    "(reconnecting with backoff)",
                    sent=False,
                )
            task = loop.create_task(self._connect(i))
            self._connecting[i] = task
        return await asyncio.shield(task)

    async def _connect(self, i: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            conn = await self._open(loop)
        except StoreUnavailable as exc:  # the handshake failed: no call was sent on it
            self._failed(loop, str(exc))
            exc.sent = False
            raise
        except (OSError, TimeoutError) as exc:
            self._failed(loop, repr(exc))
            raise StoreUnavailable(
                f"redis unavailable: cannot connect to {self.endpoint.where}: {exc!r}",
                sent=False,
            ) from exc
        finally:
            self._connecting[i] = None
        if self._closed:
            conn.close()
            raise StoreUnavailable("redis unavailable: client closed", sent=False)
        self._failures = 0
        self._slots[i] = conn
        self.connects += 1
        return conn

    def _failed(self, loop: asyncio.AbstractEventLoop, error: str) -> None:
        self._failures += 1
        self._last_error = error
        self._retry_at = loop.time() + RECONNECT.delay(self._failures, self._jitter)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        ep = self.endpoint

        def factory() -> _Connection:
            return _Connection(loop, ep.timeout_s)

        async with asyncio.timeout(ep.connect_timeout_s):
            if ep.path is not None:
                _, conn = await loop.create_unix_connection(factory, ep.path)
            else:
                _, conn = await loop.create_connection(
                    factory, ep.host, ep.port, ssl=ep.tls, server_hostname=ep.server_hostname
                )
            try:
                await self._handshake(conn)
            except BaseException:
                conn.close()
                raise
        return conn

    async def _handshake(self, conn: _Connection) -> None:
        """AUTH and SELECT as redis-py does on connect; a refusal is a StoreUnavailable."""
        ep = self.endpoint
        commands: list[tuple[str | int, ...]] = []
        if ep.password is not None:
            auth: tuple[str | int, ...] = ("AUTH", ep.password)
            if ep.username:
                auth = ("AUTH", ep.username, ep.password)
            commands.append(auth)
        if ep.db:
            commands.append(("SELECT", ep.db))
        for args in commands:
            reply = await conn.send(encode_command(args))
            if isinstance(reply, ErrorReply):
                raise StoreUnavailable(f"redis unavailable: {args[0]} refused: {reply}")
