"""A lean HTTP/1.1 keep-alive client for the bench's latency figures.

One request at a time per connection, as Envoy's `http_service` asks the ext_authz port; the
answer is read by its `content-length` (both gatekeeper's ext_authz server and aiohttp send
one). Lean on purpose: a decision's latency measured through it is the server's plus a few
microseconds of Python, never an HTTP library's queueing.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["HttpConnection", "Reply"]

_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class HttpConnection:
    """One keep-alive connection to 127.0.0.1:`port`. Raises ConnectionError when the server
    closes it or answers something this client does not read (chunked bodies)."""

    def __init__(self, port: int, *, headers: dict[str, str] | None = None) -> None:
        self._port = port
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> HttpConnection:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        return self

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def head(self, method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
        """A request without a body, as bytes (built once, sent many times)."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        return f"{method} {path} HTTP/1.1\r\nhost: bench\r\n{self._fixed}{extra}\r\n".encode()

    async def send(self, raw: bytes) -> Reply:
        """Send one request (from `head`) and read its answer."""
        if self._reader is None or self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw)
        return await asyncio.wait_for(self._read(self._reader), _TIMEOUT_S)

    async def request(self, method: str, path: str, body: object | None = None) -> Reply:
        """A JSON request (`body` None: no body)."""
        if body is None:
            return await self.send(self.head(method, path))
        data = json.dumps(body).encode()
        head = self.head(
            method,
            path,
            {"content-type": "application/json", "content-length": str(len(data))},
        )
        return await self.send(head + data)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Reply:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding":
                raise ConnectionError("chunked answers are not read by this client")
        body = await reader.readexactly(length) if length else b""
        return Reply(status, body)
