"""A TCP proxy in front of a real Redis that loses replies on demand: the ambiguous outcomes a
dropped connection, a timeout or a failover make, one at a time and deterministically.

- `swallow`: replies from Redis are dropped (the call ran; its caller never hears it);
- `hold`: requests are kept back from Redis (the call has not run yet);
- `cut()`: every client connection open now is aborted; their Redis side stays open, so
  `release()` can still hand Redis what was held (a write that arrives after its caller gave
  up) before closing it.
New connections made after a cut pass through untouched unless the flags say otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    held: list[bytes] = field(default_factory=list)
    cut: bool = False


class ReplyCutter:
    def __init__(self, upstream_url: str) -> None:
        self._url = upstream_url
        self.swallow = False
        self.hold = False
        self._pairs: list[_Pair] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> ReplyCutter:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._url.startswith("unix://"):
            return await asyncio.open_unix_connection(self._url[7:].split("?")[0])
        host_port = self._url.split("://")[1].split("/")[0]
        host, port = host_port.rsplit(":", 1)
        return await asyncio.open_connection(host, int(port))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open_upstream()
        pair = _Pair(writer, up_writer)
        self._pairs.append(pair)
        for coro in (self._requests(reader, pair), self._replies(up_reader, pair)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _requests(self, reader: asyncio.StreamReader, pair: _Pair) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if self.hold or pair.held:
                    pair.held.append(data)
                else:
                    pair.upstream.write(data)

    async def _replies(self, reader: asyncio.StreamReader, pair: _Pair) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if not self.swallow and not pair.cut:
                    pair.client.write(data)

    def cut(self) -> None:
        """Abort every client connection open now (their calls fail as lost)."""
        for pair in self._pairs:
            if not pair.cut:
                pair.cut = True
                pair.client.transport.abort()

    async def release(self) -> None:
        """Hand Redis what cut connections held back, then close their Redis side."""
        for pair in [p for p in self._pairs if p.cut]:
            for data in pair.held:
                pair.upstream.write(data)
            pair.held.clear()
            await pair.upstream.drain()
            pair.upstream.close()
            self._pairs.remove(pair)
        await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in self._pairs:
            pair.client.transport.abort()
            pair.upstream.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
