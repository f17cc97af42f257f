"""One HTTP/2 connection of the lean gRPC server (h2c with prior knowledge, as gRPC clients
speak it): frames in, streams opened and fed, answers of one loop iteration written with one
send, flow control both ways, SETTINGS, PING, RST_STREAM, GOAWAY.

Limits (NetLimits): request bytes are held against the connection window we advertise
(`max_buffered_bytes`), given back only when a handler takes their message, and data beyond
a window is a FLOW_CONTROL_ERROR; header blocks are counted as their frames arrive; RST_STREAM,
PING, SETTINGS and refused streams have a per-second budget (GOAWAY ENHANCE_YOUR_CALM past
it); a socket whose answers are not read stops being read; the sweep closes a connection whose
preface or header block is late, or that sits idle.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Protocol, cast

import grpc
import hpack

from gatekeeper.net.grpc_call import parse_timeout, status_code
from gatekeeper.net.guards import Budget, NetStats, Refusal, Sweeper
from gatekeeper.net.h2.stream import STREAM_WINDOW, H2Stream
from gatekeeper.net.h2.wire import (
    CONNECTION_PREFACE,
    DEFAULT_WINDOW,
    MAX_WINDOW,
    ErrorCode,
    Flag,
    FrameType,
    HeaderDecoder,
    Setting,
    frame,
    parse_frame_header,
    settings_payload,
    trailers,
)
from gatekeeper.net.limits import NetLimits

__all__ = ["H2Connection", "ServerSide"]

log = logging.getLogger(__name__)

MAX_FRAME = 16_384  # the frame size we accept (the protocol's default; we never raise it)
# answer DATA bytes one loop iteration may gather before they are written at once: the write
# is what tells (pause_writing) that the client does not read
_EARLY_FLUSH = 256 << 10
# a connection closed for cause gets this long to take its GOAWAY, then is dropped
_LINGER_S = 2.0
_U32 = struct.Struct(">L")
_GOAWAY = struct.Struct(">LL")
_RESERVED_HEADERS = frozenset(
    ("content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "user-agent")
)


class ServerSide(Protocol):
    """The server, as its connections use it."""

    connections: set[H2Connection]
    stopping: bool
    limits: NetLimits
    stats: NetStats
    sweeper: Sweeper

    def lookup(
        self, path: str, metadata: tuple[tuple[str, str], ...]
    ) -> grpc.RpcMethodHandler | None: ...

    def handler_failed(self, method: str) -> None:
        """A handler of `method` raised (a bug; logged by the caller)."""


@dataclass(frozen=True, slots=True)
class _RequestHead:
    """What a call's request headers say, digested once per distinct header list."""

    path: str
    metadata: tuple[tuple[str, str], ...]  # the caller's metadata (no pseudo/reserved headers)
    timeout_s: float | None
    encoding: str | None
    refusal: bytes  # not a gRPC request: the header block that answers it (else empty)

    @classmethod
    def of(cls, headers: list[tuple[str, str]], max_count: int) -> _RequestHead:
        path = method = content_type = timeout = encoding = None
        metadata = []
        for name, value in headers:
            if name[0] == ":":
                if name == ":path":
                    path = value
                elif name == ":method":
                    method = value
            elif name == "content-type":
                content_type = value
            elif name == "grpc-timeout":
                timeout = value
            elif name == "grpc-encoding":
                encoding = value
            elif name not in _RESERVED_HEADERS:
                metadata.append((name, value))
        refusal = b""
        if len(headers) > max_count:
            refusal = b"\x00\x07:status\x03431"
        elif method != "POST":
            refusal = b"\x00\x07:status\x03405"
        elif not content_type or not content_type.startswith("application/grpc"):
            refusal = b"\x00\x07:status\x03415"
        return cls(path or "", tuple(metadata), parse_timeout(timeout), encoding, refusal)


class _ConnectionError(Exception):
    def __init__(self, code: int, reason: str, refusal: Refusal = Refusal.PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.code = code
        self.refusal = refusal


class H2Connection(asyncio.Protocol):
    """One client connection (h2c with prior knowledge, as gRPC clients speak it)."""

    def __init__(self, server: ServerSide) -> None:
        self.server = server
        limits = self.limits = server.limits
        self.stats = server.stats
        self.max_body = limits.max_body_bytes
        self.max_inflated = limits.max_decompressed_bytes
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = MAX_FRAME
        self.send_window = DEFAULT_WINDOW
        self.streams: dict[int, H2Stream] = {}
        self.blocked: dict[int, H2Stream] = {}  # streams with answer bytes waiting for window
        self._decoder = HeaderDecoder(limits.max_header_bytes)
        self._last_headers: list[tuple[str, str]] | None = None
        self._last_head = _RequestHead("", (), None, None, b"")
        self._buffer = b""
        self._preface = False
        self._last_id = 0
        # the connection receive window: request bytes held until handlers take them
        self._window = max(limits.max_buffered_bytes, DEFAULT_WINDOW)
        self._recv_window = DEFAULT_WINDOW  # bytes the client may still send (raised below)
        self._recv_unacked = 0  # refunded bytes not yet sent back in a WINDOW_UPDATE
        self._continuation: tuple[int, int, bytearray] | None = None
        self._continuations = 0  # CONTINUATION frames of the header block being received
        self._max_continuations = 4 + limits.max_header_bytes // 256
        now = self.loop.time()
        self._resets = Budget(limits.max_resets_per_s, now)
        self._pings = Budget(limits.max_pings_per_s, now)
        self._settings = Budget(limits.max_settings_per_s, now)
        self._write_paused = False
        self.unsent = 0  # answer bytes queued in the streams' outboxes, not yet written
        self._writers: list[asyncio.Future[None]] = []  # streaming writers waiting for room
        self._head_at: float | None = server.sweeper.now  # the preface is due from now on
        self.active_at = server.sweeper.now  # when bytes last arrived
        self._out: list[bytes] = []
        self._out_data = 0  # DATA bytes in _out
        self._flush_scheduled = False
        self.closed = False
        self.idle = asyncio.Event()
        self.idle.set()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if len(self.server.connections) >= self.limits.max_connections:
            self.stats.refuse(Refusal.TOO_MANY_CONNECTIONS)
            self.closed = True
            self.transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and len(peername) >= 2:
            family = "ipv6" if ":" in str(peername[0]) else "ipv4"
            host = f"[{peername[0]}]" if family == "ipv6" else peername[0]
            self.peer = f"{family}:{host}:{peername[1]}"
        self.server.connections.add(self)
        limits = self.limits
        settings = frame(
            FrameType.SETTINGS,
            0,
            0,
            settings_payload(
                (
                    (Setting.MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams),
                    (Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                    (Setting.MAX_HEADER_LIST_SIZE, limits.max_header_bytes),
                    (Setting.ENABLE_PUSH, 0),
                )
            ),
        )
        self._write(settings)  # the server preface comes first
        if self._window > DEFAULT_WINDOW:
            self.window_update(0, self._window - DEFAULT_WINDOW)
            self._recv_window = self._window

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.active_at = self.server.sweeper.now
        if self._buffer:
            data = self._buffer + data
        if not self._preface:
            if len(data) < len(CONNECTION_PREFACE):
                if not CONNECTION_PREFACE.startswith(data):
                    self._abort(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 client (no preface)")
                    return
                self._buffer = data
                return
            if not data.startswith(CONNECTION_PREFACE):
                self._abort(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 client (no preface)")
                return
            self._preface = True
            self._head_at = None
            data = data[len(CONNECTION_PREFACE) :]
        offset, size = 0, len(data)
        try:
            while size - offset >= 9:
                length, kind, flags, stream_id = parse_frame_header(data, offset)
                if length > MAX_FRAME:
                    raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR, f"frame of {length} bytes")
                end = offset + 9 + length
                if end > size:
                    break
                self._on_frame(kind, flags, stream_id, data[offset + 9 : end])
                offset = end
                if self.closed:
                    return
        except _ConnectionError as exc:
            self.stats.refuse(exc.refusal)
            self._abort(exc.code, str(exc))
            return
        self._buffer = data[offset:] if offset < size else b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for stream in list(self.streams.values()):
            stream.reset()
        self.streams.clear()
        self.blocked.clear()
        self._wake_writers()
        self.idle.set()

    # frames in
    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is not None and kind != FrameType.CONTINUATION:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "header block interrupted")
        if kind == FrameType.DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == FrameType.HEADERS:
            self._on_headers_frame(flags, stream_id, payload)
        elif kind == FrameType.WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif kind == FrameType.SETTINGS:
            if not flags & Flag.ACK and not self._settings.spend(self.loop.time()):
                raise _ConnectionError(
                    ErrorCode.ENHANCE_YOUR_CALM, "SETTINGS flood", Refusal.SETTINGS_FLOOD
                )
            self._on_settings(flags, stream_id, payload)
        elif kind == FrameType.PING:
            if len(payload) != 8 or stream_id:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad PING")
            if not self._pings.spend(self.loop.time()):
                raise _ConnectionError(
                    ErrorCode.ENHANCE_YOUR_CALM, "PING flood", Refusal.PING_FLOOD
                )
            if not flags & Flag.ACK:
                self._write(frame(FrameType.PING, Flag.ACK, 0, payload))
        elif kind == FrameType.RST_STREAM:
            if len(payload) != 4:
                raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad RST_STREAM")
            if not stream_id:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
            self._spend_reset("RST_STREAM flood")
            reset = self.streams.get(stream_id)
            if reset is not None:
                self.blocked.pop(stream_id, None)
                reset.reset()
                self.forget(reset)
        elif kind == FrameType.CONTINUATION:
            self._on_continuation(flags, stream_id, payload)
        elif kind == FrameType.PUSH_PROMISE:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # GOAWAY (the client opens no new streams and closes when done), PRIORITY and unknown
        # frame types need nothing from us (RFC 9113 §5.5)

    def _spend_reset(self, what: str) -> None:
        """A stream ended early (the client reset it, or we refused it): past the budget,
        the client is cycling streams faster than any client needs (rapid reset)."""
        if not self._resets.spend(self.loop.time()):
            raise _ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, what, Refusal.RESET_FLOOD)

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        size = len(payload)
        self._recv_window -= size
        if self._recv_window < 0:
            raise _ConnectionError(
                ErrorCode.FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
                Refusal.FLOW_CONTROL,
            )
        if stream_id == 0:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_closed:
            if stream_id > self._last_id:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            self.refund(size)  # a stream we closed or reset: its late frames are dropped
            return
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise _ConnectionError(
                ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window", Refusal.FLOW_CONTROL
            )
        if flags & Flag.PADDED:
            payload = _unpad(payload)
            padding = size - len(payload)
            self.refund(padding)  # padding is never held
            stream.credit(padding)
            size -= padding
        stream.held += size
        stream.receive(payload, bool(flags & Flag.END_STREAM))
        if self._recv_window < MAX_FRAME:
            self._unjam()

    def _unjam(self) -> None:
        """The connection window is (nearly) used up. Held bytes of complete messages come
        back as handlers take them; bytes of incomplete messages never would, if they fill
        the window: fail the largest incomplete request, whose bytes are then refunded."""
        if self._recv_unacked:
            self._send_refund()
        if self._recv_window >= MAX_FRAME:
            return
        incomplete = [s for s in self.streams.values() if s.buffer]
        if sum(len(s.buffer) for s in incomplete) < self._window // 2:
            return  # mostly complete messages: they come back as their handlers read them
        largest = max(incomplete, key=lambda s: len(s.buffer))
        self.stats.refuse(Refusal.BUFFER_FULL)
        largest.fail(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "the connection's request buffer is full of incomplete messages",
        )
        if self._recv_unacked:
            self._send_refund()

    def refund(self, nbytes: int) -> None:
        """`nbytes` of request data left our buffers: the client may send them again
        (batched: a WINDOW_UPDATE once half the window is back)."""
        self._recv_unacked += nbytes
        if self._recv_unacked >= self._window // 2:
            self._send_refund()

    def _send_refund(self) -> None:
        self.window_update(0, self._recv_unacked)
        self._recv_window += self._recv_unacked
        self._recv_unacked = 0

    def _on_headers_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id % 2 == 0:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        if flags & Flag.PADDED:
            payload = _unpad(payload)
        if flags & Flag.PRIORITY:
            payload = payload[5:]
        if len(payload) > self.limits.max_header_bytes:
            raise self._header_too_large()
        if not flags & Flag.END_HEADERS:
            self._continuation = (stream_id, flags, bytearray(payload))
            self._continuations = 0
            self._head_at = self.server.sweeper.now
            return
        self._on_header_block(flags, stream_id, payload)

    def _header_too_large(self) -> _ConnectionError:
        return _ConnectionError(
            ErrorCode.ENHANCE_YOUR_CALM,
            f"header block larger than {self.limits.max_header_bytes} bytes",
            Refusal.HEADER_TOO_LARGE,
        )

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is None or self._continuation[0] != stream_id:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION")
        first_id, first_flags, block = self._continuation
        block += payload
        if len(block) > self.limits.max_header_bytes:
            raise self._header_too_large()
        self._continuations += 1
        if self._continuations > self._max_continuations:
            raise _ConnectionError(
                ErrorCode.ENHANCE_YOUR_CALM, "CONTINUATION flood", Refusal.HEADER_FLOOD
            )
        if flags & Flag.END_HEADERS:
            self._continuation = None
            self._head_at = None
            self._on_header_block(first_flags, first_id, bytes(block))

    def _on_header_block(self, flags: int, stream_id: int, block: bytes) -> None:
        try:
            headers = self._decoder.decode(block)
        except hpack.OversizedHeaderListError as exc:
            raise _ConnectionError(
                ErrorCode.COMPRESSION_ERROR,
                f"header list too large: {exc}",
                Refusal.HEADER_TOO_LARGE,
            ) from exc
        except hpack.HPACKError as exc:
            raise _ConnectionError(ErrorCode.COMPRESSION_ERROR, f"bad header block: {exc}") from exc
        end_stream = bool(flags & Flag.END_STREAM)
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers from the client: only their END_STREAM matters
            if end_stream and not stream.remote_closed:
                stream.end_of_request()
            return
        if stream_id <= self._last_id:
            return  # a stream already closed
        self._last_id = stream_id
        if self.server.stopping or len(self.streams) >= self.limits.max_concurrent_streams:
            if not self.server.stopping:
                self.stats.refuse(Refusal.STREAM_REFUSED)
                self._spend_reset("streams past SETTINGS_MAX_CONCURRENT_STREAMS")
            self._write(_rst(stream_id, ErrorCode.REFUSED_STREAM))
            return
        self._open(stream_id, headers, end_stream)

    def _open(self, stream_id: int, headers: list[tuple[str, str]], end_stream: bool) -> None:
        if headers is self._last_headers:  # the decoder's cached list: the same request head
            head = self._last_head
        else:
            head = _RequestHead.of(headers, self.limits.max_header_count)
            self._last_headers, self._last_head = headers, head
        handler = None if head.refusal else self.server.lookup(head.path, head.metadata)
        if handler is None:
            if head.refusal.endswith(b"431"):
                self.stats.refuse(Refusal.TOO_MANY_HEADERS)
            block = head.refusal or trailers(
                status_code(grpc.StatusCode.UNIMPLEMENTED), "Method not found!", headers_only=True
            )
            self._write_header_block(stream_id, block, end_stream=True)
            if not end_stream:  # the client may still be sending: tell it to stop
                self._write(_rst(stream_id, ErrorCode.NO_ERROR))
            return
        stream = H2Stream(
            self,
            stream_id,
            handler,
            method=head.path,
            metadata=head.metadata,
            peer=self.peer,
            timeout_s=head.timeout_s,
            encoding=head.encoding,
        )
        self.streams[stream_id] = stream
        self.idle.clear()
        if handler.request_streaming:
            stream.context.open_inbox()
            stream.start()
        if end_stream:
            stream.end_of_request()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise _ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow")
            for waiting in list(self.blocked.values()):
                self.pump(waiting)
        else:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.send_window += increment
                self.pump(stream)

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & Flag.ACK:
            return
        if len(payload) % 6:
            raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad SETTINGS")
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HL", payload, offset)
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == Setting.MAX_FRAME_SIZE:
                if not MAX_FRAME <= value <= 16_777_215:
                    raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self.peer_max_frame = value
        self._write(frame(FrameType.SETTINGS, Flag.ACK, 0))
        for stream in list(self.streams.values()):
            if stream.outbox:
                self.pump(stream)

    # frames out
    def pump(self, stream: H2Stream) -> None:
        """Write what `stream` has to send, as far as the flow-control windows allow."""
        outbox = stream.outbox
        while outbox:
            is_data, payload, end_stream = outbox[0]
            if not is_data:
                outbox.popleft()
                self._write_header_block(stream.id, payload, end_stream=end_stream)
                if end_stream:
                    self._closed_locally(stream)
                    return
                continue
            allowed = min(self.send_window, stream.send_window, self.peer_max_frame)
            if allowed <= 0 or self._write_paused:
                self.blocked[stream.id] = stream
                return
            if len(payload) <= allowed:
                outbox.popleft()
                chunk = payload
            else:
                chunk = payload[:allowed]
                outbox[0] = (True, payload[allowed:], end_stream)
            self.send_window -= len(chunk)
            stream.send_window -= len(chunk)
            self.unsent -= len(chunk)
            self._write(frame(FrameType.DATA, 0, stream.id, chunk))
            self._out_data += len(chunk)
            if self._out_data > _EARLY_FLUSH:  # let the socket say now whether it keeps up
                self._flush()
        self.blocked.pop(stream.id, None)
        stream.pumped()
        if self._writers and self.can_write():
            self._wake_writers()

    def can_write(self) -> bool:
        return not self._write_paused and self.unsent <= self.limits.max_buffered_bytes

    def write_ready(self) -> asyncio.Future[None]:
        waiter = self.loop.create_future()
        self._writers.append(waiter)
        if self.closed:
            self._wake_writers()
        return waiter

    def _wake_writers(self) -> None:
        writers, self._writers = self._writers, []
        for waiter in writers:
            if not waiter.done():
                waiter.set_result(None)

    def _closed_locally(self, stream: H2Stream) -> None:
        stream.local_closed = True
        self.blocked.pop(stream.id, None)
        if not stream.remote_closed:  # answered before the client finished sending
            self._write(_rst(stream.id, ErrorCode.NO_ERROR))
        self.forget(stream)

    def forget(self, stream: H2Stream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
            stream.release()
            self._check_idle()

    def handler_failed(self, method: str) -> None:
        self.server.handler_failed(method)

    def _check_idle(self) -> None:
        if not self.streams:
            self.idle.set()
            if self.server.stopping:
                self.close()

    def _write_header_block(self, stream_id: int, block: bytes, *, end_stream: bool) -> None:
        end = Flag.END_STREAM if end_stream else 0
        limit = self.peer_max_frame
        if len(block) <= limit:
            self._write(frame(FrameType.HEADERS, end | Flag.END_HEADERS, stream_id, block))
            return
        self._write(frame(FrameType.HEADERS, end, stream_id, block[:limit]))
        for offset in range(limit, len(block), limit):
            last = offset + limit >= len(block)
            flags = Flag.END_HEADERS if last else 0
            chunk = block[offset : offset + limit]
            self._write(frame(FrameType.CONTINUATION, flags, stream_id, chunk))

    def pause_writing(self) -> None:
        """The socket's send buffer is full (the client does not read): answers wait in their
        streams (where flow control and the writers' own wait bound them) and the socket is
        not read, so no new work comes in."""
        self._write_paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        for waiting in list(self.blocked.values()):
            self.pump(waiting)
        if self._writers and self.can_write():
            self._wake_writers()

    def sweep(self, now: float) -> None:
        if self.closed:
            return
        limits = self.limits
        if self._head_at is not None and now - self._head_at > limits.header_timeout_s:
            self.stats.refuse(Refusal.HEADER_TIMEOUT)
            self._abort(ErrorCode.ENHANCE_YOUR_CALM, "header block or preface too slow")
        elif now - self.active_at > limits.idle_timeout_s and (
            self._write_paused  # it neither reads nor sends: answers wait for nobody
            or not any(s.task is not None and not s.task.done() for s in self.streams.values())
        ):
            self.stats.refuse(Refusal.IDLE_TIMEOUT)
            self._abort(ErrorCode.NO_ERROR, "idle")

    def window_update(self, stream_id: int, increment: int) -> None:
        self._write(frame(FrameType.WINDOW_UPDATE, 0, stream_id, _U32.pack(increment)))

    def _write(self, data: bytes) -> None:
        """Frames written during one loop iteration leave in one send."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._out_data = 0
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def go_away(self) -> None:
        """Graceful stop: no new streams (GOAWAY names the last one taken)."""
        if not self.closed:
            self._write(_goaway(self._last_id, ErrorCode.NO_ERROR))
            if not self.streams:
                self.close()

    def close(self) -> None:
        if self._flush_scheduled:
            self._flush()
        if self.transport is not None:
            self.transport.close()

    def _abort(self, code: int, reason: str) -> None:
        """GOAWAY, then our side shut (FIN) while the peer's frames still in flight are read
        and dropped for _LINGER_S: closing with them unread would send a reset, which can
        destroy the GOAWAY before the peer reads it. Then the connection is dropped."""
        log.info("closing gRPC connection from %s: %s", self.peer, reason)
        self._write(_goaway(self._last_id, code, reason))
        if self._flush_scheduled:
            self._flush()
        self.closed = True  # data_received drops everything from now on
        transport = self.transport
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
            transport.resume_reading()  # drain what the peer sends (reading may be paused)
        else:
            transport.close()
        # a client that neither reads nor closes would hold it open
        self.loop.call_later(_LINGER_S, transport.abort)


def _rst(stream_id: int, code: int) -> bytes:
    return frame(FrameType.RST_STREAM, 0, stream_id, _U32.pack(code))


def _goaway(last_id: int, code: int, reason: str = "") -> bytes:
    return frame(FrameType.GOAWAY, 0, 0, _GOAWAY.pack(last_id, code) + reason.encode())


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "padded frame without a length")
    end = len(payload) - payload[0]
    if end < 1:
        raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding exceeds the frame")
    return payload[1:end]
