"""A lean asyncio HTTP/1.1 server: httptools parser, keep-alive, the requests of one connection
answered in order. What a request means is the handler's business: it gets the method, path
and headers of a request and returns the whole response, bytes ready for the wire.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import cast

import httptools

__all__ = ["Http1Handler", "Http1Server", "simple_response"]

log = logging.getLogger(__name__)

# (method, path, headers with lower-case names, keep_alive) -> the whole response
Http1Handler = Callable[[str, str, dict[str, str], bool], Awaitable[bytes]]
Request = tuple[str, str, dict[str, str], bool]
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_MAX_HEADER_BYTES = 64 * 1024


def simple_response(status: int) -> bytes:
    """A body-less answer that closes the connection (errors the server answers itself)."""
    reason = _REASONS.get(status, "Error")
    return f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection: parse, answer in order, never block the loop."""

    def __init__(self, server: Http1Server) -> None:
        self._server = server
        self._handler = server.handler
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        # requests received, answered in order by the writer task (None: stop after these);
        # a deque and one waiter future: asyncio.Queue cost ~2 µs more per request
        self._pending: deque[Request | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.writer: asyncio.Task[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass (`gatekeeper serve` runs
        # uvloop): an isinstance check here failed every connection there
        self._transport = cast(asyncio.Transport, transport)
        self.writer = asyncio.get_running_loop().create_task(self._answer_in_order())
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            log.info("bad HTTP/1.1 request: %s", exc)
            self._reject(400)

    def connection_lost(self, exc: Exception | None) -> None:
        self._put(None)
        self._server.connections.discard(self)

    def finish(self) -> asyncio.Task[None] | None:
        """Answer what was already received, then close (graceful shutdown)."""
        self._put(None)
        return self.writer

    def _put(self, item: Request | None) -> None:
        self._pending.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next(self) -> Request | None:
        while not self._pending:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._pending.popleft()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]},{text}" if key in self._headers else text

    def on_message_complete(self) -> None:
        if self._header_bytes > _MAX_HEADER_BYTES:
            self._reject(431)
            return
        method = self._parser.get_method().decode("latin-1")
        path = self._url.decode("latin-1")
        self._put((method, path, self._headers, self._parser.should_keep_alive()))
        self._url, self._headers, self._header_bytes = b"", {}, 0

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
            method, path, headers, keep_alive = item
            try:
                response = await self._handler(method, path, headers, keep_alive)
            except Exception:  # a bug, not a client error: logged, counted, 500
                log.exception("HTTP handler failed on %s %s", method, path)
                self._server.handler_failures += 1
                self._reject(500)
                return
            if self._transport.is_closing():  # the client gave up (timeout, shutdown) meanwhile
                return
            self._transport.write(response)
            if not keep_alive:
                self._transport.close()
                return


class Http1Server:
    """Serves `handler` on host:port until stop()."""

    def __init__(self, handler: Http1Handler) -> None:
        self.handler = handler
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
        return self.port

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let in-flight answers finish (up to grace_s), close connections."""
        if self._server is None:
            return
        self._server.close()
        writers = [w for w in (c.finish() for c in list(self.connections)) if w is not None]
        if writers:
            _, late = await asyncio.wait(writers, timeout=grace_s)
            for task in late:
                task.cancel()
        self._server = None
