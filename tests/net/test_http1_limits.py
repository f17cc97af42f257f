"""The HTTP/1.1 server's limits one by one, in-process with small NetLimits (the attacks on
a real serve are in test_http1_attacks.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from gatekeeper.net.guards import Refusal
from gatekeeper.net.http1 import Http1Server
from gatekeeper.net.limits import NetLimits


class Echo:
    """Answers each request with its path; `gate` holds the answers while cleared."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, method: str, path: str, headers: dict[str, str], keep: bool) -> bytes:
        await self.gate.wait()
        body = path.encode()
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def _server(limits: NetLimits) -> tuple[Http1Server, Echo]:
    echo = Echo()
    server = Http1Server(echo, limits=limits)
    await server.start("127.0.0.1", 0)
    return server, echo


@pytest.fixture
async def small() -> AsyncIterator[tuple[Http1Server, Echo]]:
    server, echo = await _server(
        NetLimits(
            max_header_count=16,
            max_body_bytes=1024,
            max_pipelined_requests=4,
            max_connections=3,
            idle_timeout_s=1,
            header_timeout_s=1,
        )
    )
    try:
        yield server, echo
    finally:
        echo.gate.set()
        await server.stop(1.0)


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    return await asyncio.wait_for(reader.read(), seconds)


async def test_too_many_header_fields_are_431_and_counted(small: tuple[Http1Server, Echo]) -> None:
    server, _ = small
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    fields = b"".join(b"x-%d: v\r\n" % i for i in range(17))
    writer.write(b"GET /a HTTP/1.1\r\n" + fields + b"\r\n")
    assert (await _eof_within(reader, 5)).startswith(b"HTTP/1.1 431")
    writer.close()
    assert server.stats.refusals == {Refusal.TOO_MANY_HEADERS: 1}


async def test_a_chunked_body_past_the_limit_is_413(small: tuple[Http1Server, Echo]) -> None:
    server, _ = small
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    chunk = b"400\r\n" + b"a" * 1024 + b"\r\n"
    writer.write(b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n" + chunk * 2)
    assert (await _eof_within(reader, 5)).startswith(b"HTTP/1.1 413")
    writer.close()
    assert server.stats.refusals == {Refusal.BODY_TOO_LARGE: 1}


async def test_connections_past_the_limit_are_closed(small: tuple[Http1Server, Echo]) -> None:
    server, _ = small
    kept = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    for _ in range(100):
        if len(server.connections) == 3:
            break
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /late HTTP/1.1\r\n\r\n")
    assert await _eof_within(reader, 5) == b""  # closed unanswered
    r, w = kept[0]
    w.write(b"GET /kept HTTP/1.1\r\n\r\n")
    assert (await asyncio.wait_for(r.readuntil(b"/kept"), 5)).startswith(b"HTTP/1.1 200")
    for _, w in [*kept, (reader, writer)]:
        w.close()
    assert server.stats.refusals == {Refusal.TOO_MANY_CONNECTIONS: 1}


async def test_an_idle_connection_is_closed(small: tuple[Http1Server, Echo]) -> None:
    server, _ = small
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /once HTTP/1.1\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"/once"), 5)).startswith(b"HTTP/1.1 200")
    assert await _eof_within(reader, 4) == b""  # idle_timeout_s=1 (+ a sweep tick)
    writer.close()
    assert server.stats.refusals == {Refusal.IDLE_TIMEOUT: 1}


async def test_pipelined_requests_past_the_queue_wait_unread_then_are_answered_in_order(
    small: tuple[Http1Server, Echo],
) -> None:
    server, echo = small
    echo.gate.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    pad = b"x-pad: " + b"p" * 200 + b"\r\n"  # ~230-byte requests: ~18 per 4 KiB slice
    writer.write(b"".join(b"GET /%d HTTP/1.1\r\n%s\r\n" % (i, pad) for i in range(200)))
    await asyncio.sleep(0.5)
    (conn,) = server.connections
    assert 4 <= len(conn._pending) <= 4 + 20  # the queue, plus what one slice held
    assert conn._unfed  # the rest waits unparsed, and the socket is not read
    echo.gate.set()
    answers = await asyncio.wait_for(reader.readuntil(b"/199"), 10)
    paths = [int(n) for n in re.findall(rb"\r\n\r\n/(\d+)", answers)]
    assert paths == list(range(200))
    writer.close()


async def test_a_client_that_does_not_read_stops_the_reading() -> None:
    """Answers of 1 MiB that are never read: the server pauses reading the socket instead of
    queuing every request's answer."""
    big = b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n" + b"b" * (1 << 20)

    async def large(method: str, path: str, headers: dict[str, str], keep: bool) -> bytes:
        return big

    limits = NetLimits(max_pipelined_requests=8, idle_timeout_s=2, header_timeout_s=5)
    server = Http1Server(large, limits=limits)
    await server.start("127.0.0.1", 0)
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n" * 1000)
        await asyncio.sleep(0.5)
        (conn,) = server.connections
        assert conn._write_paused and conn._reading_paused
        assert len(conn._pending) <= 8 + 300  # the queue, plus one slice of tiny requests
        assert conn._transport is not None
        assert conn._transport.get_write_buffer_size() < 4 << 20  # one answer or so
        for _ in range(100):  # neither reading nor sending: closed as idle
            if not server.connections:
                break
            await asyncio.sleep(0.05)
        assert server.stats.refusals == {Refusal.IDLE_TIMEOUT: 1}
        writer.close()
    finally:
        await server.stop(1.0)
