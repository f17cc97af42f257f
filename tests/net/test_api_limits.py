"""The API port's limits (net/aiohttp_site.py): aiohttp under the guard, in-process with small
NetLimits, real sockets; aiohttp's own client as the oracle for well-formed traffic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gatekeeper.net.aiohttp_site import GuardedSite, aiohttp_handler_args
from gatekeeper.net.guards import Refusal
from gatekeeper.net.limits import NetLimits

LIMITS = NetLimits(
    max_header_bytes=4096,
    max_header_count=16,
    max_connections=3,
    idle_timeout_s=1,
    header_timeout_s=1,
)


@pytest.fixture
async def site() -> AsyncIterator[GuardedSite]:
    async def hello(request: web.Request) -> web.Response:
        body = await request.read() if request.method == "POST" else b""
        return web.Response(
            text=f"hello {request.path} {len(body)}" if body else f"hello {request.path}"
        )

    app = web.Application(client_max_size=16_384)
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None, **aiohttp_handler_args(LIMITS))
    await runner.setup()
    guarded = GuardedSite(runner, "127.0.0.1", 0, limits=LIMITS)
    await guarded.start()
    try:
        yield guarded
    finally:
        await runner.cleanup()


async def _answer(site: GuardedSite, raw: bytes, within_s: float = 5) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    try:
        writer.write(raw)
        return await asyncio.wait_for(reader.read(), within_s)
    finally:
        writer.close()


async def _still_answers(site: GuardedSite) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/a", "/b"):  # keep-alive: two requests on one connection
            async with session.get(f"http://127.0.0.1:{site.port}{path}") as resp:
                assert resp.status == 200 and await resp.text() == f"hello {path}"


async def test_well_formed_requests_are_answered_keep_alive_and_pipelined(
    site: GuardedSite,
) -> None:
    await _still_answers(site)
    two = (
        b"GET /x HTTP/1.1\r\nhost: a\r\n\r\nGET /y HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
    )
    got = await _answer(site, two)
    assert got.count(b"HTTP/1.1 200") == 2 and b"hello /x" in got and b"hello /y" in got
    assert site.stats.refusals == {}


async def test_a_header_section_past_its_bytes_is_431_as_it_arrives(site: GuardedSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"GET / HTTP/1.1\r\n")
    for _ in range(10):  # 10 x 1000 bytes of fields, never ending the head
        writer.write(b"x-pad: " + b"a" * 991 + b"\r\n")
        await writer.drain()
    got = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert got.startswith(b"HTTP/1.1 431")
    assert site.stats.refusals == {Refusal.HEADER_TOO_LARGE: 1}
    await _still_answers(site)


async def test_too_many_fields_and_oversized_lines_are_refused_by_aiohttp(
    site: GuardedSite,
) -> None:
    fields = b"".join(b"x-%d: v\r\n" % i for i in range(17))
    too_many = await _answer(site, b"GET / HTTP/1.1\r\nhost: a\r\n" + fields + b"\r\n")
    assert too_many.startswith(b"HTTP/1.0 400") and b"Too many headers" in too_many
    long_line = b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n"
    assert (await _answer(site, long_line)).startswith(b"HTTP/1.0 400")
    await _still_answers(site)


async def test_a_body_past_the_limit_is_413(site: GuardedSite) -> None:
    body = b"a" * 20_000
    raw = b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    assert (await _answer(site, raw)).startswith(b"HTTP/1.1 413")


async def test_slowloris_and_silent_connections_are_closed_in_time(site: GuardedSite) -> None:
    slow_r, slow_w = await asyncio.open_connection("127.0.0.1", site.port)
    silent_r, silent_w = await asyncio.open_connection("127.0.0.1", site.port)
    slow_w.write(b"GET / HTTP/1.1\r\n")
    async with asyncio.timeout(6):
        for _ in range(40):  # a byte every 100 ms: never idle, never done
            if slow_r.at_eof():
                break
            slow_w.write(b"x")
            await asyncio.sleep(0.1)
        assert await slow_r.read() == b"" and await silent_r.read() == b""
    for w in (slow_w, silent_w):
        w.close()
    assert site.stats.refusals == {Refusal.HEADER_TIMEOUT: 2}
    await _still_answers(site)


async def test_an_idle_keep_alive_connection_is_closed(site: GuardedSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"GET /a HTTP/1.1\r\nhost: a\r\n\r\n")
    async with asyncio.timeout(6):
        head = await reader.readuntil(b"hello /a")
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.read() == b""  # then nothing more is sent: closed
    writer.close()
    assert site.stats.refusals == {Refusal.IDLE_TIMEOUT: 1}
    await _still_answers(site)


async def test_connections_past_the_limit_are_closed_as_they_arrive(site: GuardedSite) -> None:
    held = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(3)]
    await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ConnectionError):  # aborted: reset, nothing answered
        got = await asyncio.wait_for(reader.read(), 5)
        assert got == b""
        raise ConnectionResetError
    writer.close()
    assert site.stats.refusals == {Refusal.TOO_MANY_CONNECTIONS: 1}
    for _, w in held:
        w.close()
    await asyncio.sleep(0.1)
    await _still_answers(site)


async def test_a_body_larger_than_a_header_section_arriving_slowly_is_no_header(
    site: GuardedSite,
) -> None:
    """12 KB of body (3x max_header_bytes) in pieces after the head: it is the body, not a
    header section that never ends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 12000\r\n\r\n")
    for _ in range(3):
        await asyncio.sleep(0.05)
        writer.write(b"a" * 4000)
    head = await asyncio.wait_for(reader.readuntil(b"hello /p 12000"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert site.stats.refusals == {}
