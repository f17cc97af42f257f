"""Attacks on a real serve's API port (aiohttp under net/aiohttp_site.py): every one refused or
closed within the limits, counted in /metrics as server="api", memory bounded, and the API
still answering afterwards."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from tests.net.target import TEST_LIMITS, Serve, refusals, slowloris


async def _healthy(serve: Serve) -> None:
    assert serve.alive()
    url = f"http://127.0.0.1:{serve.api_port}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200


async def test_slowloris_on_the_api_port_is_closed_by_the_header_timeout(serve: Serve) -> None:
    """100 connections, each sending a byte of its header section every 0.2 s."""
    timeout_s = float(TEST_LIMITS["GATEKEEPER_NET_HEADER_TIMEOUT_S"])
    before = (await refusals(serve, "api")).get("header_timeout", 0)
    serve.reset_peak()
    rss = serve.rss_mb()
    closed_after = await slowloris(serve.api_port, b"GET /healthz HTTP/1.1\r\nhost: a\r\nx-slow: ")
    assert closed_after < timeout_s * 2 + 1.5, closed_after
    assert (await refusals(serve, "api"))["header_timeout"] == before + 100
    grown = serve.peak_mb() - rss
    print(f"\n[rss] API slowloris x100: peak growth {grown:.1f} MB")
    assert grown < 20
    await _healthy(serve)


async def test_a_header_section_that_never_ends_is_cut_at_the_limit(serve: Serve) -> None:
    """Header fields sent without end: 431 once the section passes max_header_bytes (64 KiB),
    long before the 8 MiB the client would send."""
    before = (await refusals(serve, "api")).get("header_too_large", 0)
    serve.reset_peak()
    rss = serve.rss_mb()
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.api_port)
    sent = 0
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: a\r\n")
        with contextlib.suppress(ConnectionError):
            for i in range(1024):  # up to 8 MiB of 8 KiB fields (stops at 512 KiB)
                writer.write(b"x-%d: %s\r\n" % (i, b"a" * 8000))
                await writer.drain()
                sent += 8000
                if reader.at_eof() or sent > 1 << 19:
                    break
        status = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 431"), status
    assert (await refusals(serve, "api"))["header_too_large"] == before + 1
    assert serve.peak_mb() - rss < 20
    await _healthy(serve)


async def test_well_formed_api_traffic_is_answered(serve: Serve) -> None:
    """aiohttp as the oracle: 200 keep-alive requests, 20 at a time."""
    url = f"http://127.0.0.1:{serve.api_port}/healthz"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as session:

        async def get() -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        statuses = await asyncio.wait_for(asyncio.gather(*(get() for _ in range(200))), 60)
    assert set(statuses) == {200}
