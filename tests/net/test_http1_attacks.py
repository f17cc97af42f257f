"""Hostile HTTP/1.1 clients against a real `gatekeeper serve` ext_authz HTTP port.

Each attack asserts the server's answer (431, 413, 400, or the connection closed), the growth
of the server process's peak memory where it could grow, and that a well-formed check is
answered right after. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from gatekeeper.net.limits import NetLimits
from tests.net.target import (
    HTTP_CHECK,
    TEST_LIMITS,
    Serve,
    http_check_status,
    refusals,
    slowloris,
)

LIMITS = NetLimits()


async def _answer(port: int, request: bytes, *, chunk: int = 0) -> tuple[bytes, bool]:
    """(status line, closed by the server) after sending `request` (in `chunk`-byte writes
    when given; the server may answer and close before all of it is sent, so the answer is
    read while sending)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            step = chunk or len(request)
            for i in range(0, len(request), step):
                writer.write(request[i : i + step])
                await writer.drain()

    sending = asyncio.create_task(send())
    try:
        status = await asyncio.wait_for(reader.readline(), 10)
        with contextlib.suppress(ConnectionError):  # a reset: closed with our bytes unread
            await asyncio.wait_for(reader.read(), 10)  # returns at EOF: the server closed
        return status, True
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sending
        writer.close()


async def _answers_after(serve: Serve, attack: str, peak_growth_mb: float, before: float) -> None:
    grown = serve.peak_mb() - before
    print(f"\n[rss] {attack}: rss before {before:.1f} MB, peak growth {grown:.1f} MB")
    assert grown < peak_growth_mb, f"{attack}: peak RSS grew {grown:.1f} MB"
    assert serve.alive()
    assert (await http_check_status(serve.http_port)).startswith(b"HTTP/1.1 200")


def _start(serve: Serve) -> float:
    serve.reset_peak()
    return serve.rss_mb()


async def test_an_oversized_header_is_431(serve: Serve) -> None:
    before = _start(serve)
    request = HTTP_CHECK[:-2] + b"x-big: " + b"a" * 70_000 + b"\r\n\r\n"
    status, closed = await _answer(serve.http_port, request)
    assert status.startswith(b"HTTP/1.1 431") and closed
    await _answers_after(serve, "oversized header (70 KB)", 20, before)


async def test_a_header_that_never_ends_is_cut_at_the_limit(serve: Serve) -> None:
    """64 MiB of one header value, no line end: refused after ~64 KiB, never buffered."""
    before = _start(serve)
    request = b"GET /v1/models HTTP/1.1\r\nx-endless: " + b"a" * (64 << 20)
    status, closed = await _answer(serve.http_port, request, chunk=1 << 16)
    assert status.startswith(b"HTTP/1.1 431") and closed
    await _answers_after(serve, "endless header value (64 MiB offered)", 20, before)


async def test_endless_headers_are_431(serve: Serve) -> None:
    before = _start(serve)
    fields = b"".join(b"x-h%d: v\r\n" % i for i in range(100_000))
    status, closed = await _answer(
        serve.http_port, HTTP_CHECK[:-2] + fields + b"\r\n", chunk=1 << 16
    )
    assert status.startswith(b"HTTP/1.1 431") and closed
    await _answers_after(serve, "endless headers (100,000 fields offered)", 20, before)


async def test_an_absurd_content_length_is_413_before_any_body(serve: Serve) -> None:
    request = b"POST /v1/models HTTP/1.1\r\nhost: a\r\ncontent-length: 99999999999999\r\n\r\n"
    status, closed = await _answer(serve.http_port, request)
    assert status.startswith(b"HTTP/1.1 413") and closed
    assert (await http_check_status(serve.http_port)).startswith(b"HTTP/1.1 200")


async def test_bytes_that_are_not_http_are_400(serve: Serve) -> None:
    tls_hello = bytes.fromhex("160301020001000001fc0303") + bytes(range(256))
    for junk in (
        tls_hello,
        b"GET / HTTP/1.1\r\nbad\x00name: x\r\n\r\n",
        b"\xff" * 100 + b"\r\n\r\n",
    ):
        status, closed = await _answer(serve.http_port, junk)
        assert status.startswith(b"HTTP/1.1 400") and closed, junk[:20]
    assert (await http_check_status(serve.http_port)).startswith(b"HTTP/1.1 200")


async def test_slowloris_connections_are_closed_by_the_header_timeout(serve: Serve) -> None:
    """100 connections, each sending a byte of its header section every 0.2 s."""
    timeout_s = float(TEST_LIMITS["GATEKEEPER_NET_HEADER_TIMEOUT_S"])
    head = b"GET /v1/models HTTP/1.1\r\nhost: a\r\nx-slow: "
    closed_after = await slowloris(serve.http_port, head)
    assert closed_after < timeout_s * 2 + 1.5, closed_after
    assert (await http_check_status(serve.http_port)).startswith(b"HTTP/1.1 200")


async def test_ten_thousand_pipelined_requests_are_answered_in_bounded_memory(
    serve: Serve,
) -> None:
    """Sent in one go and not read for a while: the server stops reading past its queue and
    while its answers are not read, then answers every one, in order."""
    before = _start(serve)
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.http_port, limit=1 << 20)
    try:
        writer.write(HTTP_CHECK * 10_000)
        await asyncio.sleep(2)  # not reading: the server must hold little
        growth_unread = serve.peak_mb() - before
        statuses = 0
        async with asyncio.timeout(120):
            while statuses < 10_000:
                line = await reader.readline()
                assert line, "closed early"
                if line.startswith(b"HTTP/1.1 "):
                    assert line.startswith(b"HTTP/1.1 200"), line
                    statuses += 1
    finally:
        writer.close()
    print(f"\n[rss] 10,000 pipelined, unread for 2 s: peak growth {growth_unread:.1f} MB")
    assert growth_unread < 20
    await _answers_after(serve, "10,000 pipelined requests (answered)", 30, before)


async def test_aiohttp_as_a_client_is_answered(serve: Serve) -> None:
    """aiohttp as the oracle: keep-alive checks, 50 at a time, all answered 200."""
    url = f"http://127.0.0.1:{serve.http_port}/v1/models"
    headers = {"x-api-key": "gk-test-busy", "host": "api.example.com"}
    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def check() -> int:
            async with session.get(url, headers=headers) as response:
                await response.read()
                return response.status

        statuses = await asyncio.wait_for(asyncio.gather(*(check() for _ in range(500))), 60)
    assert set(statuses) == {200}


async def test_a_refusal_is_counted_in_metrics(serve: Serve) -> None:
    """gatekeeper_net_refusals_total{server="authz_http", reason=...} on /metrics."""
    before = (await refusals(serve, "authz_http")).get("protocol_error", 0)
    status, _ = await _answer(serve.http_port, b"\x00 not http\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400")
    assert (await refusals(serve, "authz_http"))["protocol_error"] == before + 1
    assert serve.alive()
