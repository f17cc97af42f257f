"""ext_authz in Envoy's HTTP mode (`http_service`): the fast path (DESIGN.md §6, port 9192).

A lean asyncio HTTP/1.1 server (httptools parser, keep-alive, requests on one connection
answered in order) that hands every request to the same Authorizer as the gRPC mode and writes
its Answer back: 200 + headers for the upstream and the client, or the denial's status, headers
and problem+json body. Envoy copies headers according to the filter's `authorization_response`
lists; dynamic metadata travels as `x-gatekeeper-meta-*` headers (`dynamic_metadata_from_headers`).

Differences from the gRPC mode (Envoy's, not ours): no per-route context_extensions (usage
comes from the route table), and a 5xx answer is an authorization *error* for Envoy, which
answers its own `status_on_error` (the 503 problem body is dropped).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import cast

import httptools

from gatekeeper.edge import Answer, EdgeRequest
from gatekeeper.edge.answers import META_HEADER_PREFIX
from gatekeeper.model import frozen_map

__all__ = ["META_PREFIX", "AuthzHttpServer", "render_answer"]

log = logging.getLogger(__name__)

META_PREFIX = META_HEADER_PREFIX
Handler = Callable[[EdgeRequest], Awaitable[Answer]]
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_MAX_HEADER_BYTES = 64 * 1024
# Envoy's HTTP-mode spelling of OkHttpResponse.headers_to_remove
HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"


def render_answer(answer: Answer, *, keep_alive: bool, head: bool = False) -> bytes:
    """The HTTP/1.1 response Envoy's http_service mode expects for `answer`.

    `head`: the check was a HEAD request (Envoy forwards the client's method), whose answer
    has no body — one after it was a protocol error that cost Envoy the connection. Header
    values go out as UTF-8, the bytes Envoy passes on (as the gRPC mode's strings)."""
    status = 503 if answer.unavailable else answer.status
    allowed = answer.allowed
    lines = [_status_line(status)]
    if allowed:
        lines += [f"{name}: {value}\r\n" for name, value in answer.upstream_headers]
    lines += [f"{name}: {value}\r\n" for name, value in answer.client_headers]
    if allowed and answer.upstream_headers_to_remove:
        removed = ", ".join(answer.upstream_headers_to_remove)
        lines.append(f"{HEADERS_TO_REMOVE}: {removed}\r\n")
    body = b"" if allowed else answer.body
    lines += [f"{_meta_name(key)}{value}\r\n" for key, value in answer.metadata.items()]
    lines.append(f"content-length: {len(body)}\r\n\r\n" if keep_alive else
                 f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")  # fmt: skip
    start = "".join(lines).encode()
    return start if head else start + body


@functools.cache
def _status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"


@functools.cache
def _meta_name(key: str) -> str:
    """`x-gatekeeper-meta-decision-id: ` for the metadata key `decision_id`."""
    return f"{META_PREFIX}{key.replace('_', '-')}: "


class _Connection(asyncio.Protocol):
    """One keep-alive connection from Envoy: parse, answer in order, never block the loop."""

    def __init__(
        self, handler: Handler, connections: set[_Connection], failed: Callable[[], None]
    ) -> None:
        self._handler = handler
        self._connections = connections
        self._failed = failed
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        # requests received, answered in order by the writer task (None: stop after these);
        # a deque and one waiter future: asyncio.Queue cost ~2 µs more per request
        self._pending: deque[tuple[EdgeRequest, bool] | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass (`gatekeeper serve` runs
        # uvloop): an isinstance check here failed every connection there
        self._transport = cast(asyncio.Transport, transport)
        self._writer = asyncio.get_running_loop().create_task(self._answer_in_order())
        self._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            log.info("bad request from envoy: %s", exc)
            self._reject(400)

    def connection_lost(self, exc: Exception | None) -> None:
        self._put(None)
        self._connections.discard(self)

    def finish(self) -> asyncio.Task[None] | None:
        """Answer what was already received, then close (graceful shutdown)."""
        self._put(None)
        return self._writer

    def _put(self, item: tuple[EdgeRequest, bool] | None) -> None:
        self._pending.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next(self) -> tuple[EdgeRequest, bool] | None:
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
        headers = self._headers
        request = EdgeRequest(
            method=method,
            path=self._url.decode("latin-1"),
            headers=frozen_map(headers),
            request_id=headers.get("x-request-id", ""),
        )
        self._put((request, self._parser.should_keep_alive()))
        self._url, self._headers, self._header_bytes = b"", {}, 0

    def _reject(self, status: int) -> None:
        if self._transport is not None and not self._transport.is_closing():
            reason = _REASONS.get(status, "Error")
            head = f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            self._transport.write(head.encode())
            self._transport.close()

    async def _answer_in_order(self) -> None:
        while True:
            item = await self._next()
            if item is None or self._transport is None or self._transport.is_closing():
                if self._transport is not None:
                    self._transport.close()
                return
            request, keep_alive = item
            try:
                answer = await self._handler(request)
            except Exception:  # a bug, not a client error: logged, counted, 500
                log.exception("authorizer failed on %s %s", request.method, request.path)
                self._failed()
                self._reject(500)
                return
            if self._transport.is_closing():  # Envoy gave up (timeout, shutdown) meanwhile
                return
            self._transport.write(
                render_answer(answer, keep_alive=keep_alive, head=request.method == "HEAD")
            )
            if not keep_alive:
                self._transport.close()
                return


class AuthzHttpServer:
    """Serves `handler` on host:port until stop()."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.port = 0
        self.handler_failures = 0  # checks whose handler raised (answered 500; a bug)

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen; `reuse_port` shares the port with the processes of one `serve --workers N`.
        Raises OSError when the port is taken."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self._handler, self._connections, self._handler_failed),
            host,
            port,
            reuse_port=reuse_port,
            backlog=1024,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def _handler_failed(self) -> None:
        self.handler_failures += 1

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let in-flight answers finish (up to grace_s), close connections."""
        if self._server is None:
            return
        self._server.close()
        writers = [w for w in (c.finish() for c in list(self._connections)) if w is not None]
        if writers:
            _, late = await asyncio.wait(writers, timeout=grace_s)
            for task in late:
                task.cancel()
        self._server = None
