"""Hostile HTTP/2 clients against a real `gatekeeper serve` gRPC port (the lean server).

Each attack asserts its bound — the GOAWAY or RST_STREAM code or gRPC status the server
answers, the growth of the server process's peak memory (VmHWM, reset before the attack) —
and that a well-formed Envoy `Check` is answered right after. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import zlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, RstStreamFrame

from gatekeeper.net.limits import NetLimits
from tests.net.h2client import CHECK, RawH2, empty_settings, grpc_message, ping
from tests.net.target import Serve, check_request, grpc_check_allowed, refusals

FLOW_CONTROL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 3, 7, 8, 11
RESOURCE_EXHAUSTED = "8"
LIMITS = NetLimits()
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


async def _answers_after(serve: Serve, attack: str, peak_growth_mb: float, before: float) -> None:
    """The server is up, its peak memory grew less than `peak_growth_mb` during the attack,
    and a well-formed Check on a new connection is answered."""
    grown = serve.peak_mb() - before
    print(f"\n[rss] {attack}: rss before {before:.1f} MB, peak growth {grown:.1f} MB")
    assert grown < peak_growth_mb, f"{attack}: peak RSS grew {grown:.1f} MB"
    assert serve.alive()
    assert await grpc_check_allowed(serve.grpc_port)


def _start(serve: Serve) -> float:
    serve.reset_peak()
    return serve.rss_mb()


def _gzip_zeros(mib: int) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    return b"".join([*(deflate.compress(chunk) for _ in range(mib)), deflate.flush()])


async def test_a_gzip_bomb_is_resource_exhausted_without_being_inflated(serve: Serve) -> None:
    bomb = _gzip_zeros(128)  # ~130 KB on the wire, 128 MiB inflated
    before = _start(serve)
    client = await RawH2.connect(serve.grpc_port)
    try:
        stream_id = await client.call(bomb, compressed=True, encoding="gzip")
        seen = await client.read_until(lambda s: "grpc-status" in s.status(stream_id))
        assert seen.status(stream_id)["grpc-status"] == RESOURCE_EXHAUSTED
        # the connection still serves: a plain call on it is answered
        other = await client.call(check_request().SerializeToString())
        seen = await client.read_until(lambda s: "grpc-status" in s.status(other))
        assert seen.status(other)["grpc-status"] == "0"
    finally:
        await client.close()
    await _answers_after(serve, "gzip bomb (128 MiB inflated)", 40, before)


async def test_data_beyond_the_connection_window_is_a_flow_control_error(serve: Serve) -> None:
    """Complete messages no handler took yet (unary calls without END_STREAM) hold the
    connection window: 17 of 1 MiB overrun its 16 MiB."""
    message = grpc_message(b"\0" * ((1 << 20) - 5 - 16))
    before = _start(serve)
    client = await RawH2.connect(serve.grpc_port)
    try:
        frames = []
        for n in range(LIMITS.max_buffered_bytes // (1 << 20) + 1):
            stream_id = 1 + 2 * n
            frames.append(HeadersFrame(stream_id, client.header_block(), flags=["END_HEADERS"]))
            frames += [
                DataFrame(stream_id, message[i : i + 16_384])
                for i in range(0, len(message), 16_384)
            ]
        client.raw(*frames)
        goaway = await client.goaway()
        assert goaway is not None and goaway.error_code == FLOW_CONTROL_ERROR
    finally:
        await client.close()
    await _answers_after(serve, "connection window overrun", 60, before)


async def test_rapid_reset_is_answered_enhance_your_calm(serve: Serve) -> None:
    before = _start(serve)
    client = await RawH2.connect(serve.grpc_port)
    try:
        frames = []
        for n in range(5_000):
            stream_id = 1 + 2 * n
            frames.append(HeadersFrame(stream_id, client.header_block(), flags=["END_HEADERS"]))
            frames.append(RstStreamFrame(stream_id, error_code=CANCEL))
        client.raw(*frames)
        goaway = await client.goaway()
        assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
        # cut off near the budget's burst, not after thousands of streams
        assert goaway.last_stream_id <= 2 * (LIMITS.max_resets_per_s + 50)
    finally:
        await client.close()
    await _answers_after(serve, "rapid reset (5,000 HEADERS+RST_STREAM)", 30, before)


@pytest.mark.parametrize("flood", ["ping", "settings"])
async def test_ping_and_settings_floods_are_answered_enhance_your_calm(
    serve: Serve, flood: str
) -> None:
    before = _start(serve)
    client = await RawH2.connect(serve.grpc_port)
    try:
        frames = [ping(n) if flood == "ping" else empty_settings() for n in range(10_000)]
        client.raw(*frames)
        goaway = await client.goaway()
        assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    finally:
        await client.close()
    await _answers_after(serve, f"{flood} flood (10,000 frames)", 30, before)


@pytest.mark.parametrize("size", [0, 1024])
async def test_a_continuation_flood_is_answered_enhance_your_calm(serve: Serve, size: int) -> None:
    """Empty CONTINUATIONs never grow the block (frame count bound); 1 KiB ones do (bytes)."""
    before = _start(serve)
    client = await RawH2.connect(serve.grpc_port)
    try:
        frames = [HeadersFrame(1, client.header_block()[:3])]
        frames += [ContinuationFrame(1, b"\x00" * size) for _ in range(20_000 if not size else 200)]
        client.raw(*frames)
        goaway = await client.goaway()
        assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    finally:
        await client.close()
    await _answers_after(serve, f"CONTINUATION flood ({size}-byte frames)", 30, before)


async def test_a_header_block_left_open_is_cut_by_the_header_timeout(serve: Serve) -> None:
    client = await RawH2.connect(serve.grpc_port)
    try:
        client.raw(HeadersFrame(1, client.header_block()[:3]))  # and never END_HEADERS
        goaway = await client.goaway(timeout=5)
        assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    finally:
        await client.close()
    assert await grpc_check_allowed(serve.grpc_port)


async def test_ten_thousand_streams_are_refused_past_the_limit(serve: Serve) -> None:
    """Streams opened and never finished: the server holds max_concurrent_streams of them,
    refuses the next ones, and past the reset budget closes the connection."""
    before = _start(serve)
    client = await RawH2.connect(serve.grpc_port)
    try:
        block = client.header_block()
        client.raw(*(HeadersFrame(1 + 2 * n, block, flags=["END_HEADERS"]) for n in range(10_000)))
        goaway = await client.goaway()
        assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
        refused = [s for s, code in client.seen.resets.items() if code == REFUSED_STREAM]
        assert min(refused) == 1 + 2 * LIMITS.max_concurrent_streams
        assert len(refused) <= LIMITS.max_resets_per_s + 20  # the budget refills meanwhile
    finally:
        await client.close()
    await _answers_after(serve, "10,000 streams opened at once", 40, before)


async def test_ten_thousand_well_behaved_calls_on_one_channel_all_succeed(serve: Serve) -> None:
    """grpcio as the oracle: a client that honours SETTINGS_MAX_CONCURRENT_STREAMS is never
    refused, whatever it asks for at once."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{serve.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        calls = [stub.Check(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(10_000)]
        answers = await asyncio.wait_for(asyncio.gather(*calls), 90)
    assert all(a.status == health_pb2.HealthCheckResponse.SERVING for a in answers)


async def test_answers_never_read_hold_bounded_memory(serve: Serve) -> None:
    """A client that opens windows wide, asks for large answers (reflection's file
    descriptors) on 50 streams and never reads: the server stops reading the socket and its
    writers wait, so its memory stays bounded, not 50 x 200 answers."""
    request = _reflection_request()
    before = _start(serve)
    client = await RawH2.connect(serve.grpc_port, rcvbuf=65_536)
    try:
        client.h2.update_settings({4: 2**31 - 1})  # SETTINGS_INITIAL_WINDOW_SIZE
        client.h2.increment_flow_control_window(2**31 - 1 - 65_535)
        await client.flush()
        await client.read_some(0.5)  # the server's SETTINGS ack; from now on nothing is read
        for _ in range(50):
            stream_id = client.open(REFLECTION)
            client.send(stream_id, grpc_message(request) * 200)
        await client.flush()
        await asyncio.sleep(3)  # the server writes what it can, then waits
        assert serve.alive()
    finally:
        await client.close()
    await _answers_after(
        serve, "answers never read (50 streams x 200 reflection answers)", 60, before
    )


def _reflection_request() -> bytes:
    from grpc_reflection.v1alpha import reflection_pb2

    return reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="envoy.service.auth.v3.Authorization"
    ).SerializeToString()


async def test_well_formed_h2_calls_are_answered(serve: Serve) -> None:
    """h2 as the oracle: plain and gzip-compressed Checks on one connection."""
    client = await RawH2.connect(serve.grpc_port)
    try:
        message = check_request().SerializeToString()
        plain = await client.call(message, path=CHECK)
        packed = await client.call(
            zlib.compress(message, wbits=31), compressed=True, encoding="gzip"
        )
        seen = await client.read_until(
            lambda s: all("grpc-status" in s.status(i) for i in (plain, packed))
        )
        assert seen.status(plain)["grpc-status"] == seen.status(packed)["grpc-status"] == "0"
        assert seen.goaway is None
    finally:
        await client.close()


async def test_a_refusal_is_counted_in_metrics(serve: Serve) -> None:
    """gatekeeper_net_refusals_total{server="grpc", reason=...} on /metrics; the process is up
    and serving after every attack above."""
    before = (await refusals(serve, "grpc")).get("ping_flood", 0)
    client = await RawH2.connect(serve.grpc_port)
    try:
        client.raw(*(ping(n) for n in range(1_000)))
        assert await client.goaway() is not None
    finally:
        await client.close()
    assert (await refusals(serve, "grpc"))["ping_flood"] == before + 1
    assert serve.alive()
    assert await grpc_check_allowed(serve.grpc_port)
