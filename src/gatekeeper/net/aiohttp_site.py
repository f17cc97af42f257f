"""The API port's listener: aiohttp's HTTP/1.1 server under the same NetLimits as the others.

aiohttp parses and answers; every connection is wrapped in a guard that counts what aiohttp
does not: open connections (past `max_connections` a new one is closed as it arrives), the
bytes of a header section as they arrive (past `max_header_bytes`: 431, then closed), how
long a header section takes (past `header_timeout_s`: closed, slowloris) and how long a
connection sits idle between requests (past `idle_timeout_s`: closed). aiohttp itself bounds
each header line and field (`max_header_bytes`), the header count (`max_header_count`), the
requests it queues per connection, the body (the application's `client_max_size`), and
drains its writes (a client that does not read pauses its handler, not the server).

Which request aiohttp is on is read from its RequestHandler (`_request_count`,
`_request_in_progress`, `_messages` and the newest message's payload): the versions are
pinned by the lock, and tests/net/test_api_limits.py fails if they change meaning.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web

from gatekeeper.net.guards import NetStats, Refusal, Sweeper
from gatekeeper.net.limits import NetLimits

__all__ = ["GuardedSite", "aiohttp_handler_args"]

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)

# after a refusal: how long (and how many bytes) what the client still sends is read and
# dropped before the connection closes
_LINGER_S = 2.0
_LINGER_BYTES = 1 << 20


def aiohttp_handler_args(limits: NetLimits) -> dict[str, Any]:
    """The keyword arguments of aiohttp's RequestHandler that carry `limits`."""
    line = min(limits.max_header_bytes, 65_536)
    return {
        "max_line_size": line,
        "max_field_size": line,
        "max_headers": limits.max_header_count,
        # past the guard's idle timeout: the guard closes (and counts) first
        "keepalive_timeout": float(limits.idle_timeout_s + limits.header_timeout_s),
    }


class _Guard(asyncio.Protocol):
    """One connection: aiohttp's RequestHandler, with the counts it does not keep."""

    def __init__(self, site: GuardedSite, inner: asyncio.Protocol) -> None:
        self._site = site
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        now = site.sweeper.now
        self._head_at: float | None = now  # a header section is due (the first one from now)
        self._head_bytes = 0
        self._requests = 0  # requests aiohttp had parsed when the current head began
        self._active_at = now
        self._payload: Any = None  # the body of the last request parsed (is_eof() when in)
        self._dropping = False  # refused: reading and dropping until closed
        self._dropped = 0

    # -- what aiohttp's handler exposes of its state (see the module note)
    def _parsed(self) -> int:
        return int(getattr(self._inner, "_request_count", 0))

    def _busy(self) -> bool:
        """A request is queued, handled, or its body still arriving."""
        inner = self._inner
        if getattr(inner, "_request_in_progress", False) or getattr(inner, "_messages", ()):
            return True
        payload = self._payload
        return payload is not None and not payload.is_eof()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        site = self._site
        if len(site.connections) >= site.limits.max_connections:
            site.stats.refuse(Refusal.TOO_MANY_CONNECTIONS)
            self._transport.abort()
            self._inner = asyncio.Protocol()  # aiohttp never sees it
            return
        site.connections.add(self)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._dropping:  # refused: what follows is read and dropped, up to a bound
            self._dropped += len(data)
            if self._dropped > _LINGER_BYTES and self._transport is not None:
                self._transport.abort()
            return
        now = self._site.sweeper.now
        self._active_at = now
        if self._head_at is None and not self._busy():  # the next request's head starts
            self._head_at, self._head_bytes, self._requests = now, 0, self._parsed()
        if self._head_at is not None:
            self._head_bytes += len(data)
        self._inner.data_received(data)
        if self._head_at is not None:
            if self._parsed() > self._requests:  # aiohttp has the whole header section
                self._head_at = None
                queued = getattr(self._inner, "_messages", ())
                self._payload = queued[-1][1] if queued else None  # the newest one's body
            elif self._head_bytes > self._site.limits.max_header_bytes:
                self._refuse(Refusal.HEADER_TOO_LARGE)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._site.connections.discard(self)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def sweep(self, now: float) -> None:
        limits = self._site.limits
        if self._head_at is not None and now - self._head_at > limits.header_timeout_s:
            self._close(Refusal.HEADER_TIMEOUT)  # a head begun and late, or the first one
            return
        if now - self._active_at > limits.idle_timeout_s and not self._busy():
            self._close(Refusal.IDLE_TIMEOUT)

    def _refuse(self, reason: Refusal) -> None:
        """Answer 431, shut our side, then read and drop what the client still sends for a
        while before closing (closing on unread bytes resets the connection: the client
        could lose the answer)."""
        transport = self._transport
        if transport is None or transport.is_closing() or self._dropping:
            return
        self._site.stats.refuse(reason)
        self._dropping = True
        transport.write(_TOO_LARGE)
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(_LINGER_S, transport.close)

    def _close(self, reason: Refusal) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._site.stats.refuse(reason)
        self._transport.abort()


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite whose connections are guarded (module note); `stats` counts what was
    refused, by reason (gatekeeper_net_refusals_total{server="api"})."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limits: NetLimits,
                 stats: NetStats | None = None, reuse_port: bool = False) -> None:  # fmt: skip
        super().__init__(runner, host, port, reuse_port=reuse_port)
        self.limits = limits
        self.stats = stats if stats is not None else NetStats()
        self.connections: set[_Guard] = set()
        self.sweeper = Sweeper(limits, lambda: self.connections)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self.sweeper.start()
        self._server = await loop.create_server(
            lambda: _Guard(self, server()),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = int(sockets[0].getsockname()[1]) if sockets else self._port

    async def stop(self) -> None:
        await self.sweeper.stop()
        await super().stop()
