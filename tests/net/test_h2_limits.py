"""The lean HTTP/2 server's limits one by one, in-process with small NetLimits (the attacks on
a real serve are in test_h2_attacks.py): header count, connections, idle timeout, windows
refunded when the handler takes a message, and a window full of incomplete messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from gatekeeper.net.grpc_server import LeanGrpcServer
from gatekeeper.net.guards import Refusal
from gatekeeper.net.limits import NetLimits
from tests.net.h2client import RawH2, grpc_message, grpc_request_headers

UNARY, HOLD = "/test.Limits/Unary", "/test.Limits/Hold"


class Handlers:
    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def unary(self, request: bytes, context: Any) -> bytes:
        return str(len(request)).encode()

    async def hold(self, requests: AsyncIterator[bytes], context: Any) -> bytes:
        """Reads nothing until the gate opens, then counts the bytes of every message."""
        await self.gate.wait()
        return str(sum([len(r) async for r in requests])).encode()


async def _serve(limits: NetLimits) -> tuple[LeanGrpcServer, Handlers, int]:
    server = LeanGrpcServer(limits=limits)
    handlers = Handlers()
    opts: dict[str, Any] = {"request_deserializer": None, "response_serializer": None}
    server.add_registered_method_handlers(
        "test.Limits",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(handlers.unary, **opts),
            "Hold": grpc.stream_unary_rpc_method_handler(handlers.hold, **opts),
        },
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, handlers, port


@pytest.fixture
async def small() -> AsyncIterator[tuple[LeanGrpcServer, Handlers, int]]:
    served = await _serve(
        NetLimits(max_header_count=16, max_connections=2, idle_timeout_s=1, header_timeout_s=5)
    )
    try:
        yield served
    finally:
        served[1].gate.set()
        await served[0].stop(0.5)


async def test_too_many_header_fields_answer_the_stream_431(
    small: tuple[LeanGrpcServer, Handlers, int],
) -> None:
    server, _, port = small
    client = await RawH2.connect(port)
    try:
        headers = grpc_request_headers(UNARY) + [(f"x-m{i}", "v") for i in range(16)]
        stream_id = client.next_stream_id()
        client.h2.send_headers(stream_id, headers, end_stream=True)
        await client.flush()
        seen = await client.read_until(lambda s: stream_id in s.headers)
        assert dict(seen.headers[stream_id][0])[":status"] == "431"
        assert seen.goaway is None  # the connection serves on
        other = await client.call(b"abc", path=UNARY)
        seen = await client.read_until(lambda s: "grpc-status" in s.status(other))
        assert seen.status(other)["grpc-status"] == "0"
    finally:
        await client.close()
    assert server.stats.refusals == {Refusal.TOO_MANY_HEADERS: 1}


async def test_connections_past_the_limit_are_closed(
    small: tuple[LeanGrpcServer, Handlers, int],
) -> None:
    server, _, port = small
    kept = [await RawH2.connect(port) for _ in range(2)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed before any SETTINGS
    finally:
        writer.close()
        for client in kept:
            await client.close()
    assert server.stats.refusals == {Refusal.TOO_MANY_CONNECTIONS: 1}


async def test_an_idle_connection_is_sent_goaway_and_closed(
    small: tuple[LeanGrpcServer, Handlers, int],
) -> None:
    server, _, port = small
    client = await RawH2.connect(port)
    try:
        goaway = await client.goaway(timeout=5)
        assert goaway is not None and goaway.error_code == 0
        await client.read_until(lambda s: s.closed, timeout=5)
        assert client.seen.closed
    finally:
        await client.close()
    assert server.stats.refusals == {Refusal.IDLE_TIMEOUT: 1}


async def test_a_client_that_grants_no_window_and_sends_nothing_is_closed_when_idle(
    small: tuple[LeanGrpcServer, Handlers, int],
) -> None:
    """Its answer waits for window that never comes: that is not work in progress."""
    server, _, port = small
    client = await RawH2.connect(port)
    try:
        client.h2.update_settings({4: 0})  # SETTINGS_INITIAL_WINDOW_SIZE: no answer DATA
        stream_id = await client.call(b"abc", path=UNARY)
        goaway = await client.goaway(timeout=5)
        assert goaway is not None and goaway.error_code == 0
        assert client.seen.data_bytes == 0 and "grpc-status" not in client.seen.status(stream_id)
    finally:
        await client.close()
    assert server.stats.refusals == {Refusal.IDLE_TIMEOUT: 1}


async def test_the_stream_window_comes_back_only_as_the_handler_reads(
    small: tuple[LeanGrpcServer, Handlers, int],
) -> None:
    """A client-streaming call whose handler does not read yet: the client can send one
    stream window (1 MiB) and no more; once the handler reads, the rest flows."""
    _, handlers, port = small
    client = await RawH2.connect(port)
    message = grpc_message(b"m" * (64 << 10))
    total = 64
    try:
        stream_id = client.open(HOLD)
        sent = 0
        loop = asyncio.get_running_loop()
        stalled_at = None
        async with asyncio.timeout(20):
            while sent < total:
                if client.h2.local_flow_control_window(stream_id) >= len(message):
                    client.send(stream_id, message, end_stream=sent == total - 1)
                    sent += 1
                    await client.flush()
                    continue
                if stalled_at is None:
                    stalled_at = sent
                    until = loop.time() + 0.5
                    while loop.time() < until:  # no window comes back while nobody reads
                        await client.read_some(0.1)
                    assert client.h2.local_flow_control_window(stream_id) < len(message)
                    handlers.gate.set()
                await client.read_some(0.1)
            seen = await client.read_until(lambda s: "grpc-status" in s.status(stream_id))
        assert stalled_at is not None and stalled_at * len(message) <= (1 << 20) + len(message)
        assert seen.status(stream_id)["grpc-status"] == "0"
    finally:
        await client.close()


async def test_a_window_full_of_incomplete_messages_fails_the_largest() -> None:
    server, _, port = await _serve(NetLimits(max_buffered_bytes=131_072))
    client = await RawH2.connect(port)
    try:
        big, small_ = client.open(UNARY), client.open(UNARY)
        client.send(big, grpc_message(b"a" * 200_000)[:70_005])
        await client.flush()
        small_message = grpc_message(b"b" * 100_000)
        client.send(small_, small_message[:56_005])
        await client.flush()
        seen = await client.read_until(lambda s: "grpc-status" in s.status(big))
        assert seen.status(big)["grpc-status"] == "8"  # RESOURCE_EXHAUSTED
        await client.read_until(lambda s: client.h2.local_flow_control_window(small_) > 50_000)
        client.send(small_, small_message[56_005:], end_stream=True)
        await client.flush()
        seen = await client.read_until(lambda s: "grpc-status" in s.status(small_))
        assert seen.status(small_)["grpc-status"] == "0"
    finally:
        await client.close()
        await server.stop(0.5)
    assert server.stats.refusals == {Refusal.BUFFER_FULL: 1}
