"""The lean gRPC server against real gRPC clients (grpcio's C core) and raw HTTP/2 bytes.

Every call kind, flow control past the windows both ways, deadlines, cancellation, metadata,
compression, concurrency, graceful stop and protocol errors.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import grpc
import hpack
import pytest
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gatekeeper.net.grpc_server import LeanGrpcServer
from gatekeeper.net.h2.wire import CONNECTION_PREFACE, FrameType, frame, parse_frame_header

ECHO = "/test.Echo/"


def _ident(x: bytes) -> bytes:
    return x


class Recorder:
    """Handlers of a bytes-in/bytes-out test service, registered like generated code does."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()
        self.remaining: float | None = None
        self.metadata: dict[str, str] = {}
        self.produced = 0

    async def unary(self, request: bytes, context: Any) -> bytes:
        self.metadata = dict(context.invocation_metadata())
        self.remaining = context.time_remaining()
        if request.startswith(b"abort:"):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, request[6:].decode())
        if request == b"trailers":
            await context.send_initial_metadata((("x-initial", "1"),))
            context.set_trailing_metadata((("x-trailing", "2"), ("x-blob-bin", b"\x00\xff")))
        if request == b"boom":
            raise RuntimeError("handler bug")
        return request[::-1]

    async def slow(self, request: bytes, context: Any) -> bytes:
        context.add_done_callback(lambda ctx: self.cancelled.set() if ctx.cancelled() else None)
        self.started.set()
        await asyncio.sleep(float(request or b"30"))
        return b"late"

    async def big(self, request: bytes, context: Any) -> bytes:
        return b"x" * int(request)

    async def count(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        for i in range(int(request)):
            yield str(i).encode()

    async def flood(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        for _ in range(int(request)):
            self.produced += 1
            yield b"x" * 65536

    async def total(self, requests: AsyncIterator[bytes], context: Any) -> bytes:
        return str(sum([len(r) async for r in requests])).encode()

    async def chat(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for r in requests:
            yield r.upper()

    def register(self, server: LeanGrpcServer) -> None:
        opts: dict[str, Any] = {"request_deserializer": _ident, "response_serializer": _ident}
        server.add_registered_method_handlers(
            "test.Echo",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary, **opts),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow, **opts),
                "Big": grpc.unary_unary_rpc_method_handler(self.big, **opts),
                "Count": grpc.unary_stream_rpc_method_handler(self.count, **opts),
                "Flood": grpc.unary_stream_rpc_method_handler(self.flood, **opts),
                "Total": grpc.stream_unary_rpc_method_handler(self.total, **opts),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat, **opts),
            },
        )


@pytest.fixture
async def served() -> AsyncIterator[tuple[LeanGrpcServer, Recorder, int]]:
    server = LeanGrpcServer()
    recorder = Recorder()
    recorder.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield server, recorder, port
    finally:
        await server.stop(0.5)


@pytest.fixture
async def channel(served: tuple[LeanGrpcServer, Recorder, int]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served[2]}") as ch:
        yield ch


def _unary(ch: grpc.aio.Channel, name: str) -> Any:
    return ch.unary_unary(ECHO + name)


async def test_every_call_kind(channel: grpc.aio.Channel) -> None:
    assert await _unary(channel, "Unary")(b"abc") == b"cba"
    stream = channel.unary_stream(ECHO + "Count")(b"4")
    assert [m async for m in stream] == [b"0", b"1", b"2", b"3"]

    async def parts() -> AsyncIterator[bytes]:
        for p in (b"ab", b"cde", b""):
            yield p

    assert await channel.stream_unary(ECHO + "Total")(parts()) == b"5"
    chat = channel.stream_stream(ECHO + "Chat")(parts())
    assert [m async for m in chat] == [b"AB", b"CDE", b""]


async def test_status_details_and_metadata_reach_the_client(
    served: tuple[LeanGrpcServer, Recorder, int], channel: grpc.aio.Channel
) -> None:
    server, recorder = served[0], served[1]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _unary(channel, "Unary")("abort:no – 100 % sûr".encode())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "no – 100 % sûr"  # percent-encoded on the wire
    call = _unary(channel, "Unary")(b"trailers", metadata=(("x-tenant", "acme"),), timeout=5)
    assert await call == b"sreliart"
    assert ("x-initial", "1") in tuple(await call.initial_metadata())
    trailing = dict(await call.trailing_metadata())
    assert trailing["x-trailing"] == "2" and trailing["x-blob-bin"] == b"\x00\xff"
    assert recorder.metadata["x-tenant"] == "acme"
    assert recorder.remaining is not None and 0 < recorder.remaining <= 5.1  # rounded up
    assert server.handler_failures == {}  # an abort is an answer, not a failure
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _unary(channel, "Unary")(b"boom")
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert server.handler_failures == {ECHO + "Unary": 1}  # counted for /metrics
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _unary(channel, "Nope")(b"")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_messages_larger_than_the_windows_both_ways(channel: grpc.aio.Channel) -> None:
    """Requests beyond our 1 MiB stream window, answers beyond the client's initial 64 KiB."""
    three_mb = b"y" * (3 << 20)
    assert await _unary(channel, "Unary")(three_mb) == three_mb
    answer = await _unary(channel, "Big")(str(4_000_000).encode())  # the client's max: 4 MiB
    assert len(answer) == 4_000_000
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _unary(channel, "Unary")(b"z" * (5 << 20))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_gzip_requests(channel: grpc.aio.Channel) -> None:
    call = _unary(channel, "Unary")(b"compressible " * 100, compression=grpc.Compression.Gzip)
    assert await call == (b"compressible " * 100)[::-1]


async def test_many_concurrent_calls_on_one_connection(channel: grpc.aio.Channel) -> None:
    calls = [_unary(channel, "Unary")(str(i).encode()) for i in range(500)]
    answers = await asyncio.gather(*calls)
    assert answers == [str(i).encode()[::-1] for i in range(500)]


async def test_a_client_cancel_cancels_the_handler(
    served: tuple[LeanGrpcServer, Recorder, int], channel: grpc.aio.Channel
) -> None:
    recorder = served[1]
    call = _unary(channel, "Slow")(b"30")
    await asyncio.wait_for(recorder.started.wait(), 5)
    call.cancel()
    await asyncio.wait_for(recorder.cancelled.wait(), 5)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # its deadline passes: the same
        await _unary(channel, "Slow")(b"30", timeout=0.2)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_graceful_stop_finishes_calls_in_flight_and_refuses_new_ones(
    served: tuple[LeanGrpcServer, Recorder, int], channel: grpc.aio.Channel
) -> None:
    server, recorder, _ = served
    call = _unary(channel, "Slow")(b"0.3")
    await asyncio.wait_for(recorder.started.wait(), 5)
    stopping = asyncio.create_task(server.stop(5))
    assert await call == b"late"
    await stopping
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _unary(channel, "Unary")(b"x", timeout=2)
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_grpc_libraries_servicers_run_unchanged() -> None:
    """The generated registrations of grpcio's own asyncio servicers (health with its
    server stream) and of Envoy's protos (client streaming ALS)."""
    server = LeanGrpcServer()
    health = __import__("grpc_health.v1.health", fromlist=["aio"]).aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    received: list[int] = []

    class Logs(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
        async def StreamAccessLogs(self, requests: Any, context: Any) -> Any:
            async for message in requests:
                received.append(len(message.http_logs.log_entry))
            return als_pb2.StreamAccessLogsResponse()

    als_pb2_grpc.add_AccessLogServiceServicer_to_server(Logs(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            await health.set("svc", health_pb2.HealthCheckResponse.SERVING)
            watch = stub.Watch(health_pb2.HealthCheckRequest(service="svc"))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            await health.set("svc", health_pb2.HealthCheckResponse.NOT_SERVING)
            second = await watch.read()
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            logs = als_pb2_grpc.AccessLogServiceStub(ch).StreamAccessLogs()
            for n in (1, 3):
                message = als_pb2.StreamAccessLogsMessage()
                for _ in range(n):
                    message.http_logs.log_entry.add()
                await logs.write(message)
            await logs.done_writing()
            await logs
            assert received == [1, 3]
    finally:
        await server.stop(0.5)


def _request_block(method: str, *extra: tuple[str, str]) -> bytes:
    """The HPACK header block of a gRPC call to test.Echo/`method`."""
    return hpack.Encoder().encode(
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", ECHO + method),
            (":authority", "x"),
            ("content-type", "application/grpc"),
            *extra,
        ]
    )


def _raw_connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(CONNECTION_PREFACE + frame(FrameType.SETTINGS, 0, 0))
    return sock


def _read_frames(
    sock: socket.socket, until: int, flags: int = 0
) -> list[tuple[int, int, int, bytes]]:
    """Frames read until one of type `until` with `flags` set (or the connection closes)."""
    data, frames = b"", []
    while True:
        while len(data) >= 9:
            length, kind, kind_flags, sid = parse_frame_header(data, 0)
            if len(data) < 9 + length:
                break
            frames.append((kind, kind_flags, sid, data[9 : 9 + length]))
            data = data[9 + length :]
            if kind == until and flags & kind_flags == flags:
                return frames
        chunk = sock.recv(65536)
        if not chunk:
            return frames
        data += chunk


async def test_ping_is_answered_and_a_non_http2_client_is_closed(
    served: tuple[LeanGrpcServer, Recorder, int],
) -> None:
    port = served[2]

    def ping() -> list[tuple[int, int, int, bytes]]:
        with _raw_connect(port) as sock:
            sock.sendall(frame(FrameType.PING, 0, 0, b"12345678"))
            return _read_frames(sock, FrameType.PING)

    frames = await asyncio.to_thread(ping)
    assert (FrameType.PING, 1, 0, b"12345678") in frames

    def http1() -> list[tuple[int, int, int, bytes]]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return _read_frames(sock, FrameType.GOAWAY)

    frames = await asyncio.to_thread(http1)
    goaway = [f for f in frames if f[0] == FrameType.GOAWAY]
    assert goaway and struct.unpack(">L", goaway[0][3][4:8])[0] == 1  # PROTOCOL_ERROR


async def test_a_raw_call_split_into_continuation_and_padded_frames(
    served: tuple[LeanGrpcServer, Recorder, int],
) -> None:
    """Header blocks across CONTINUATION frames, padded DATA, a message split over frames."""
    port = served[2]
    block = _request_block("Unary", ("x-long", "v" * 300))
    message = struct.pack(">BL", 0, 6) + b"abcdef"

    def call() -> list[tuple[int, int, int, bytes]]:
        with _raw_connect(port) as sock:
            sock.sendall(
                frame(FrameType.HEADERS, 0, 1, block[:50])
                + frame(FrameType.CONTINUATION, 0, 1, block[50:100])
                + frame(FrameType.CONTINUATION, 0x4, 1, block[100:])
                + frame(FrameType.DATA, 0x8, 1, b"\x03" + message[:4] + b"\0\0\0")
                + frame(FrameType.DATA, 0x1, 1, message[4:])
            )
            return _read_frames(sock, FrameType.HEADERS, flags=0x1)  # END_STREAM

    frames = await asyncio.to_thread(call)
    data = b"".join(f[3] for f in frames if f[0] == FrameType.DATA and f[2] == 1)
    assert data == struct.pack(">BL", 0, 6) + b"fedcba"
    decoder = hpack.Decoder()
    blocks = [dict(decoder.decode(f[3])) for f in frames if f[0] == FrameType.HEADERS]
    assert blocks[0][":status"] == "200" and blocks[-1]["grpc-status"] == "0"


async def test_a_client_that_stops_reading_holds_the_writer_not_our_memory(
    served: tuple[LeanGrpcServer, Recorder, int],
) -> None:
    """A server stream to a client whose window stays 0: the handler's writes wait once about
    WRITE_BUFFER (1 MiB) of answer is queued, instead of buffering all 100 x 64 KiB."""
    _, recorder, port = served
    block = _request_block("Flood")
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        no_window = struct.pack(">HL", 4, 0)  # SETTINGS_INITIAL_WINDOW_SIZE = 0
        sock.sendall(
            CONNECTION_PREFACE
            + frame(FrameType.SETTINGS, 0, 0, no_window)
            + frame(FrameType.HEADERS, 0x4, 1, block)
            + frame(FrameType.DATA, 0x1, 1, struct.pack(">BL", 0, 3) + b"100")
        )
        for _ in range(50):
            await asyncio.sleep(0.02)
        assert 0 < recorder.produced <= 18
    finally:
        sock.close()


async def test_every_address_of_a_name_is_bound_and_a_taken_port_is_refused() -> None:
    server = LeanGrpcServer()
    Recorder().register(server)
    port = server.add_insecure_port("localhost:0")  # 127.0.0.1, and ::1 where the host has it
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert await _unary(ch, "Unary")(b"ab") == b"ba"
        with pytest.raises(OSError, match=f"cannot bind gRPC on 127.0.0.1:{port}"):
            LeanGrpcServer().add_insecure_port(f"127.0.0.1:{port}")
    finally:
        await server.stop(0.1)
