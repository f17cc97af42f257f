"""Property-based fuzz of both request parsers (bounded: a few seconds in CI).

Arbitrary bytes — valid requests, junk, both mixed and split at arbitrary points — fed to an
HTTP/1.1 connection and to an HTTP/2 connection over a fake transport: nothing raises out of
`data_received`, no task dies with an unhandled exception, whatever is written back is well
formed (HTTP/1.1 status lines; whole HTTP/2 frames), and what a connection holds stays within
its limits.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import grpc
import hpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.net.grpc_server import LeanGrpcServer
from gatekeeper.net.h2.connection import H2Connection
from gatekeeper.net.h2.wire import CONNECTION_PREFACE, frame
from gatekeeper.net.http1 import Http1Connection, Http1Server
from gatekeeper.net.limits import NetLimits

LIMITS = NetLimits(max_header_bytes=2048, max_header_count=16, max_pipelined_requests=4)
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.reading = True

    def write(self, data: bytes) -> None:
        assert not self.closing or not data, "a write after close"
        self.written += data

    def close(self) -> None:
        self.closing = True

    abort = close

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    pieces, at = [], 0
    for cut in cuts:
        if at >= len(data):
            break
        pieces.append(data[at : at + cut])
        at += cut
    return [*pieces, data[at:]] if at < len(data) else pieces


def _run(coro: Any) -> None:
    errors: list[object] = []
    with asyncio.Runner() as runner:
        runner.get_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        runner.run(coro)
    assert not errors, errors


# HTTP/1.1
_TOKEN = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
_REQUEST = st.builds(
    lambda method, path, fields, body: (
        (
            f"{method} /{path} HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in fields)
            + (f"content-length: {len(body)}\r\n\r\n" if body else "\r\n")
        ).encode()
        + body
    ),
    st.sampled_from(["GET", "POST", "HEAD", "PUT"]),
    _TOKEN,
    st.lists(st.tuples(_TOKEN, _VALUE), max_size=20),
    st.binary(max_size=64),
)
_STREAM = st.lists(st.one_of(_REQUEST, _REQUEST, st.binary(max_size=300)), max_size=8)


async def _answer(method: str, path: str, headers: dict[str, str], keep: bool) -> bytes:
    await asyncio.sleep(0)
    return b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


@FUZZ
@given(parts=_STREAM, cuts=st.lists(st.integers(1, 500), max_size=20))
def test_http1_parser_survives_anything(parts: list[bytes], cuts: list[int]) -> None:
    async def scenario() -> None:
        server = Http1Server(_answer, limits=LIMITS)
        conn = Http1Connection(server)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        for piece in _split(b"".join(parts), cuts):
            if transport.reading and not transport.closing:
                conn.data_received(piece)
            assert len(conn._pending) <= LIMITS.max_pipelined_requests + 4096 // 16
            await asyncio.sleep(0)
        for _ in range(50):
            await asyncio.sleep(0)
        conn.connection_lost(None)
        assert conn.writer is not None
        await asyncio.wait_for(conn.writer, 5)
        written = bytes(transport.written)
        assert not written or written.startswith(b"HTTP/1.1 ")

    _run(scenario())


# HTTP/2
def _block(path: str) -> bytes:
    return hpack.Encoder().encode(
        [
            (":method", "POST"),
            (":path", path),
            (":scheme", "http"),
            ("content-type", "application/grpc"),
        ]
    )


_FRAME = st.one_of(
    st.builds(
        frame,
        st.integers(0, 10),
        st.integers(0, 255),
        st.sampled_from([0, 1, 2, 3, 5, 7]),
        st.binary(max_size=40),
    ),
    st.builds(
        lambda sid, end: frame(1, 0x4 | (0x1 if end else 0), sid, _block("/fuzz.F/Echo")),
        st.sampled_from([1, 3, 5, 7]),
        st.booleans(),
    ),
    st.builds(
        lambda sid, msg, end: frame(
            0, 0x1 if end else 0, sid, struct.pack(">BL", 0, len(msg)) + msg
        ),
        st.sampled_from([1, 3, 5, 7]),
        st.binary(max_size=30),
        st.booleans(),
    ),
)


async def _echo(request: bytes, context: Any) -> bytes:
    return request


def _frames_are_whole(data: bytes) -> bool:
    at = 0
    while at + 9 <= len(data):
        at += 9 + int.from_bytes(data[at : at + 3], "big")
    return at == len(data)


@FUZZ
@given(frames=st.lists(_FRAME, max_size=12), cuts=st.lists(st.integers(1, 64), max_size=20))
def test_http2_parser_survives_anything(frames: list[bytes], cuts: list[int]) -> None:
    async def scenario() -> None:
        server = LeanGrpcServer(limits=LIMITS)
        server.add_registered_method_handlers(
            "fuzz.F",
            {
                "Echo": grpc.unary_unary_rpc_method_handler(
                    _echo, request_deserializer=None, response_serializer=None
                )
            },
        )
        conn = H2Connection(server)
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        data = CONNECTION_PREFACE + frame(4, 0, 0) + b"".join(frames)
        for piece in _split(data, cuts):
            conn.data_received(piece)
            await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(conn.streams) <= LIMITS.max_concurrent_streams
        conn.connection_lost(None)
        for _ in range(5):
            await asyncio.sleep(0)
        assert _frames_are_whole(bytes(transport.written))

    _run(scenario())
