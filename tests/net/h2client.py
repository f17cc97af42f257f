"""A raw HTTP/2 client for attacking a server: the `h2` library speaks the well-formed parts
(preface, SETTINGS, HPACK-encoded HEADERS, DATA within the windows it knows), `hyperframe`
writes what h2 refuses to (data past a window, floods, endless CONTINUATIONs), and every frame
the server sends is parsed with hyperframe so a test sees exactly what came back (GOAWAY and
RST_STREAM codes, answer headers)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.exceptions
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

__all__ = ["CHECK", "RawH2", "Seen", "grpc_request_headers"]

CHECK = "/envoy.service.auth.v3.Authorization/Check"
_PREFIX = struct.Struct(">BL")


def grpc_request_headers(path: str, *, encoding: str | None = None) -> list[tuple[str, str]]:
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "gatekeeper"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    if encoding:
        headers.append(("grpc-encoding", encoding))
    return headers


def grpc_message(payload: bytes, *, compressed: bool = False) -> bytes:
    return _PREFIX.pack(int(compressed), len(payload)) + payload


@dataclass
class Seen:
    """What the server sent, frame by frame."""

    goaway: GoAwayFrame | None = None
    resets: dict[int, int] = field(default_factory=dict)  # stream id -> error code
    headers: dict[int, list[list[tuple[str, str]]]] = field(default_factory=dict)
    data_bytes: int = 0
    closed: bool = False  # the server closed the socket

    def status(self, stream_id: int) -> dict[str, str]:
        """grpc-status and friends of a stream's last header block (trailers)."""
        return dict(self.headers.get(stream_id, [[]])[-1])


class RawH2:
    """One client connection to 127.0.0.1:`port`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.seen = Seen()
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = 1 << 24
        self._buffer = b""
        self._h2_ok = True  # h2 stops following once we break the protocol on purpose

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> RawH2:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # a small receive buffer: the server's writes back up sooner
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        client = cls(reader, writer)
        client.h2.initiate_connection()
        await client.flush()
        await client.read_until(lambda seen: client.h2.remote_settings.initial_window_size != 65535)
        return client

    # sending
    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.writer.write(data)
        await self.writer.drain()

    def raw(self, *frames: Frame) -> None:
        """Frames h2 would not send (protocol abuse); h2's own state stops being followed."""
        self._h2_ok = False
        self.writer.write(b"".join(f.serialize() for f in frames))

    def next_stream_id(self) -> int:
        return int(self.h2.get_next_available_stream_id())

    def open(
        self, path: str = CHECK, *, end_stream: bool = False, encoding: str | None = None
    ) -> int:
        stream_id = self.next_stream_id()
        self.h2.send_headers(
            stream_id, grpc_request_headers(path, encoding=encoding), end_stream=end_stream
        )
        return stream_id

    def header_block(self, path: str = CHECK) -> bytes:
        """An HPACK block of a request (encoded without touching h2's encoder state)."""
        return hpack.Encoder().encode(grpc_request_headers(path))

    async def call(self, payload: bytes, *, path: str = CHECK, compressed: bool = False,
                   encoding: str | None = None) -> int:  # fmt: skip
        stream_id = self.open(path, encoding=encoding)
        self.send(stream_id, grpc_message(payload, compressed=compressed), end_stream=True)
        await self.flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """DATA in frames of the peer's largest size (within the windows h2 knows)."""
        size = self.h2.max_outbound_frame_size
        for i in range(0, len(data), size):
            last = i + size >= len(data)
            self.h2.send_data(stream_id, data[i : i + size], end_stream=end_stream and last)
        if not data and end_stream:
            self.h2.end_stream(stream_id)

    # receiving
    async def read_some(self, timeout: float) -> bool:
        """Parse what arrives within `timeout`; False once the server closed the socket."""
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
        except (TimeoutError, ConnectionError):
            return not self.seen.closed
        if not data:
            self.seen.closed = True
            return False
        self._feed(data)
        return True

    async def read_until(self, done: object, timeout: float = 10.0) -> Seen:
        """Read until `done(seen)` holds, the socket closes, or `timeout` passes."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not done(self.seen) and loop.time() < end:  # type: ignore[operator]
            if not await self.read_some(max(0.01, min(0.5, end - loop.time()))):
                break
        return self.seen

    async def goaway(self, timeout: float = 10.0) -> GoAwayFrame | None:
        await self.read_until(lambda seen: seen.goaway is not None, timeout)
        return self.seen.goaway

    def _feed(self, data: bytes) -> None:
        if self._h2_ok:
            try:
                self.h2.receive_data(data)
                pending = self.h2.data_to_send()
                if pending:
                    self.writer.write(pending)
            except h2.exceptions.H2Error:
                self._h2_ok = False
        buffer = self._buffer + data
        offset = 0
        while len(buffer) - offset >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buffer[offset : offset + 9]))
            if len(buffer) - offset - 9 < length:
                break
            frame.parse_body(memoryview(buffer[offset + 9 : offset + 9 + length]))
            offset += 9 + length
            self._saw(frame)
        self._buffer = buffer[offset:]

    def _saw(self, frame: Frame) -> None:
        if isinstance(frame, GoAwayFrame):
            self.seen.goaway = frame
        elif isinstance(frame, RstStreamFrame):
            self.seen.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            if isinstance(frame, HeadersFrame) or not self.seen.headers.get(frame.stream_id):
                block = [(str(k), str(v)) for k, v in self._decoder.decode(frame.data)]
                self.seen.headers.setdefault(frame.stream_id, []).append(block)
        elif isinstance(frame, DataFrame):
            self.seen.data_bytes += len(frame.data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


def ping(n: int) -> PingFrame:
    return PingFrame(0, opaque_data=n.to_bytes(8, "big"))


def empty_settings() -> SettingsFrame:
    return SettingsFrame(0)
