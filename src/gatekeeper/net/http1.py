"""A lean asyncio HTTP/1.1 server: httptools parser, keep-alive, the requests of one connection
answered in order. What a request means is the handler's business: it gets the method, path
and headers of a request and returns the whole response, bytes ready for the wire.

Limits (NetLimits): the header section is counted as it arrives (bytes and fields: 431), the
body too (413, an absurd Content-Length before a byte of it), requests received and not yet
answered stop the reading of the socket past `max_pipelined_requests`, so do answers the
client does not read (pause_writing), and the sweep closes connections whose header section
is late (slowloris) or that sit idle. Bytes that are not HTTP/1.1 are answered 400.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import cast

import httptools

from gatekeeper.net.guards import NetStats, Refusal, Sweeper
from gatekeeper.net.limits import NetLimits

__all__ = ["Http1Handler", "Http1Server", "simple_response"]

log = logging.getLogger(__name__)

# (method, path, headers with lower-case names, keep_alive) -> the whole response
Http1Handler = Callable[[str, str, dict[str, str], bool], Awaitable[bytes]]
Request = tuple[str, str, dict[str, str], bool]
_REASONS = {s.value: s.phrase for s in HTTPStatus}
# a read larger than this is parsed in slices of it, so a burst of pipelined requests stops
# being parsed (and queued) once the queue is full; one request per read (Envoy) is one feed
_SLICE = 4096
# after a refusal: the answer is sent, our side shut (FIN), and what the client still sends is
# read and dropped (up to this many bytes, then no longer read) for this long before the
# connection closes (closing on unread bytes resets it: the client could lose the answer)
_LINGER_S = 2.0
_LINGER_BYTES = 1 << 20
_STATUS = {
    Refusal.HEADER_TOO_LARGE: 431,
    Refusal.TOO_MANY_HEADERS: 431,
    Refusal.BODY_TOO_LARGE: 413,
    Refusal.PROTOCOL_ERROR: 400,
}


def simple_response(status: int) -> bytes:
    """A body-less answer that closes the connection (errors the server answers itself)."""
    reason = _REASONS.get(status, "Error")
    return f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()


class _Refused(Exception):
    """Raised in a parser callback: the request breaks a limit (answered, then closed)."""

    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection: parse, answer in order, never block the loop."""

    def __init__(self, server: Http1Server) -> None:
        self._server = server
        self._handler = server.handler
        limits = server.limits
        self._max_header_bytes = limits.max_header_bytes
        self._max_header_count = limits.max_header_count
        self._max_body = limits.max_body_bytes
        self._max_pending = limits.max_pipelined_requests
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0  # of the current header section: complete fields and the URL
        self._partial = 0  # bytes fed while a header field was incomplete (slowloris, giants)
        self._events = 0  # parser callbacks of the header section so far (progress marker)
        self._body_bytes = 0
        self._head_at: float | None = None  # when the current header section began
        self._active_at = server.sweeper.now  # when bytes last arrived
        # requests received, answered in order by the writer task (None: stop after these;
        # a Refusal: answer it after these, then close); a deque and one waiter future:
        # asyncio.Queue cost ~2 µs more per request
        self._pending: deque[Request | Refusal | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.writer: asyncio.Task[None] | None = None
        self._unfed = b""  # bytes read and not parsed yet (the queue filled up)
        self._stopped = False  # no more requests are read (refused, closing)
        self._dropped = 0  # bytes received after that
        self._queue_full = False
        self._write_paused = False
        self._reading_paused = False
        self._drained: asyncio.Future[None] | None = None  # the writer waits for the socket

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass (`gatekeeper serve` runs
        # uvloop): an isinstance check here failed every connection there
        self._transport = cast(asyncio.Transport, transport)
        server = self._server
        if len(server.connections) >= server.limits.max_connections:
            server.stats.refuse(Refusal.TOO_MANY_CONNECTIONS)
            self._stopped = True
            self._transport.abort()
            return
        self._head_at = server.sweeper.now  # the first header section is due from now on
        self.writer = asyncio.get_running_loop().create_task(self._answer_in_order())
        server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            self._dropped += len(data)
            if self._dropped > _LINGER_BYTES and not self._reading_paused:
                self._reading_paused = True  # for good: the linger timer closes
                if self._transport is not None:
                    self._transport.pause_reading()
            return
        self._active_at = self._server.sweeper.now
        if len(data) <= _SLICE and not self._unfed:
            self._feed(data)
        else:
            self._feed_slices(self._unfed + data if self._unfed else data)

    def _feed_slices(self, data: bytes) -> None:
        self._unfed = b""
        for offset in range(0, len(data), _SLICE):
            if self._stopped:
                return
            if self._queue_full:
                self._unfed = data[offset:]
                return
            self._feed(data[offset : offset + _SLICE])

    def _feed(self, data: bytes) -> None:
        head = self._head_at is not None
        events = self._events
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.reason)
            else:
                log.info("bad HTTP/1.1 request: %s", exc)
                self._refuse(Refusal.PROTOCOL_ERROR)
            return
        if head and self._events == events and self._head_at is not None:
            # all of `data` went into one unfinished header field or URL, which the parser
            # holds until it ends: count it now
            self._partial += len(data)
            if self._header_bytes + self._partial > self._max_header_bytes:
                self._refuse(Refusal.HEADER_TOO_LARGE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stopped = True
        self._put(None)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._server.connections.discard(self)

    def pause_writing(self) -> None:
        """The socket's send buffer is full (the client does not read): stop reading it."""
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def sweep(self, now: float) -> None:
        limits = self._server.limits
        if self._head_at is not None and now - self._head_at > limits.header_timeout_s:
            self._close(Refusal.HEADER_TIMEOUT)
        elif now - self._active_at > limits.idle_timeout_s and (
            self._waiter is not None  # the writer waits for a request: nothing in progress
            or self._write_paused  # it neither reads nor sends: the answer waits for nobody
        ):
            self._close(Refusal.IDLE_TIMEOUT)

    def finish(self) -> asyncio.Task[None] | None:
        """Answer what was already received, then close (graceful shutdown)."""
        self._stopped = True
        self._put(None)
        return self.writer

    def _close(self, reason: Refusal) -> None:
        """Drop the connection now (a timeout: nothing it still has to receive matters)."""
        if self._transport is None or self._transport.is_closing():
            return
        self._server.stats.refuse(reason)
        self._stopped = True
        self._transport.abort()

    def _refuse(self, reason: Refusal) -> None:
        """Answer `reason` after the requests before it, read nothing more, then close."""
        if self._stopped:
            return
        self._server.stats.refuse(reason)
        self._stopped = True
        self._unfed = b""
        self._put(reason)
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        pause = self._write_paused or self._queue_full
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _put(self, item: Request | Refusal | None) -> None:
        pending = self._pending
        pending.append(item)
        if len(pending) >= self._max_pending and not self._queue_full:
            self._queue_full = True
            self._update_reading()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next(self) -> Request | Refusal | None:
        pending = self._pending
        while not pending:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        item = pending.popleft()
        if self._queue_full and len(pending) <= self._max_pending // 2:
            self._queue_full = False
            self._update_reading()
            if self._unfed and not self._stopped:
                self._feed_slices(self._unfed)
        return item

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._head_at = self._server.sweeper.now
        self._events += 1

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._events += 1
        self._header_bytes += len(url)
        if self._header_bytes > self._max_header_bytes:
            raise _Refused(Refusal.HEADER_TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._events += 1
        self._partial = 0
        self._header_bytes += len(name) + len(value)
        headers = self._headers
        if self._header_bytes > self._max_header_bytes:
            raise _Refused(Refusal.HEADER_TOO_LARGE)
        if len(headers) >= self._max_header_count:
            raise _Refused(Refusal.TOO_MANY_HEADERS)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text

    def on_headers_complete(self) -> None:
        self._head_at = None
        length = self._headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            raise _Refused(Refusal.BODY_TOO_LARGE)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body:
            raise _Refused(Refusal.BODY_TOO_LARGE)

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode("latin-1")
        path = self._url.decode("latin-1")
        self._put((method, path, self._headers, self._parser.should_keep_alive()))
        self._url, self._headers, self._header_bytes, self._partial = b"", {}, 0, 0
        self._body_bytes = 0

    def _linger(self, answer: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(answer)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._queue_full = False  # read (and drop) what the client still sends
        self._update_reading()
        asyncio.get_running_loop().call_later(_LINGER_S, transport.close)

    def _reject(self, status: int) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(simple_response(status))
            self._transport.close()

    async def _answer_in_order(self) -> None:
        while True:
            item = await self._next()
            if item is None or self._transport is None or self._transport.is_closing():
                if self._transport is not None:
                    self._transport.close()
                return
            if isinstance(item, Refusal):
                self._linger(simple_response(_STATUS.get(item, 400)))
                return
            method, path, headers, keep_alive = item
            try:
                response = await self._handler(method, path, headers, keep_alive)
            except Exception:  # a bug, not a client error: logged, counted, 500
                log.exception("HTTP handler failed on %s %s", method, path)
                self._server.handler_failures += 1
                self._reject(500)
                return
            if self._write_paused:  # the client reads slowly: hold the answer, not more
                self._drained = asyncio.get_running_loop().create_future()
                await self._drained
            if self._transport.is_closing():  # the client gave up (timeout, shutdown) meanwhile
                return
            self._transport.write(response)
            if not keep_alive:
                self._transport.close()
                return


class Http1Server:
    """Serves `handler` on host:port until stop(), within `limits`."""

    def __init__(self, handler: Http1Handler, *, limits: NetLimits | None = None) -> None:
        self.handler = handler
        self.limits = limits or NetLimits()
        self.stats = NetStats()
        self.sweeper = Sweeper(self.limits, lambda: self.connections)
        self._server: asyncio.Server | None = None
        self.connections: set[Http1Connection] = set()
        self.port = 0
        self.handler_failures = 0  # requests whose handler raised (answered 500; a bug)

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen; `reuse_port` shares the port with other processes (SO_REUSEPORT).
        Raises OSError when the port is taken."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Http1Connection(self), host, port, reuse_port=reuse_port, backlog=1024
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.sweeper.start()
        return self.port

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let in-flight answers finish (up to grace_s), close connections."""
        if self._server is None:
            return
        self._server.close()
        await self.sweeper.stop()
        writers = [w for w in (c.finish() for c in list(self.connections)) if w is not None]
        if writers:
            _, late = await asyncio.wait(writers, timeout=grace_s)
            for task in late:
                task.cancel()
        self._server = None
