"""One HTTP/2 stream of the lean gRPC server: a call's request bytes in, its answer frames
out (through its connection, which owns the flow-control windows and the socket)."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import grpc

from gatekeeper.net.grpc_call import (
    InflatedTooLarge,
    LeanContext,
    decompress,
    run_call,
    status_code,
)
from gatekeeper.net.guards import NetStats, Refusal
from gatekeeper.net.h2.wire import OK_HEADERS, OK_TRAILERS, response_headers, trailers

__all__ = ["STREAM_WINDOW", "H2Stream", "StreamOwner"]

STREAM_WINDOW = 1 << 20  # per-stream receive window we advertise
WRITE_BUFFER = 1 << 20  # a streaming answer's writes wait while more than this waits to be sent
_MESSAGE_PREFIX = struct.Struct(">BL")
Metadata = Sequence[tuple[str, str | bytes]]


class StreamOwner(Protocol):
    """The connection, as its streams use it."""

    loop: asyncio.AbstractEventLoop
    peer_initial_window: int
    max_body: int  # largest request message on the wire, bytes
    max_inflated: int  # largest request message once inflated, bytes
    stats: NetStats

    unsent: int  # answer bytes queued in the streams' outboxes, not yet written

    def pump(self, stream: H2Stream) -> None: ...
    def can_write(self) -> bool:
        """False while the socket is not drained or too many answer bytes wait to be sent."""

    def write_ready(self) -> asyncio.Future[None]:
        """Done once can_write() may be true again (or the connection is gone)."""

    def window_update(self, stream_id: int, increment: int) -> None: ...
    def refund(self, nbytes: int) -> None:
        """`nbytes` of request data left the connection's buffers (connection window)."""

    def forget(self, stream: H2Stream) -> None: ...
    def handler_failed(self, method: str) -> None: ...


class H2Stream:
    """One call's HTTP/2 stream: request bytes in, answer frames out under flow control."""

    __slots__ = (
        "buffer",
        "conn",
        "context",
        "drained",
        "encoding",
        "handler",
        "held",
        "id",
        "local_closed",
        "outbox",
        "owed",
        "precredited",
        "recv_window",
        "remote_closed",
        "request",
        "send_window",
        "task",
        "unacked",
    )

    def __init__(
        self,
        conn: StreamOwner,
        stream_id: int,
        handler: grpc.RpcMethodHandler,
        *,
        method: str,
        metadata: tuple[tuple[str, str], ...],
        peer: str,
        timeout_s: float | None,
        encoding: str | None,
    ) -> None:
        self.conn = conn
        self.id = stream_id
        self.handler = handler
        self.encoding = encoding
        self.buffer = bytearray()
        self.request: bytes | None = None
        self.context = LeanContext(
            self,
            method=method,
            metadata=metadata,
            peer=peer,
            timeout_s=timeout_s,
            serializer=handler.response_serializer,
            deserializer=handler.request_deserializer,
        )
        self.task: asyncio.Task[None] | None = None
        self.send_window = conn.peer_initial_window
        self.outbox: deque[tuple[bool, bytes, bool]] = deque()  # (is_data, bytes, end_stream)
        self.remote_closed = False
        self.local_closed = False
        self.unacked = 0  # stream window consumed and not yet sent back
        self.recv_window = STREAM_WINDOW  # bytes the client may still send on this stream
        # request bytes counted against the connection window and not yet refunded: they
        # are refunded when the handler takes their message, or when the stream ends
        self.held = 0
        # stream window granted ahead for the buffered (incomplete) message: a message larger
        # than the window could never arrive otherwise
        self.precredited = 0
        # per message delivered and not yet read: (connection bytes, stream bytes) to refund
        self.owed: deque[tuple[int, int]] = deque()
        self.drained: asyncio.Future[None] | None = None  # a writer waiting for the outbox

    # CallTransport
    def send_headers(self, metadata: Metadata) -> None:
        self._queue(False, response_headers(metadata), False)

    def send_message(self, payload: bytes) -> None:
        self._queue(True, _framed(payload), False)

    def send_status(
        self, code: int, details: str, metadata: Metadata, *, headers_only: bool
    ) -> None:
        self._queue(False, trailers(code, details, metadata, headers_only=headers_only), True)

    def send_unary(self, payload: bytes) -> None:
        """A whole OK answer of one message, no metadata: headers, message, trailers."""
        if self.local_closed:
            return
        outbox = self.outbox
        framed = _framed(payload)
        self.conn.unsent += len(framed)
        outbox.append((False, OK_HEADERS, False))
        outbox.append((True, framed, False))
        outbox.append((False, OK_TRAILERS, True))
        self.conn.pump(self)

    async def writable(self) -> None:
        """Returns once less than WRITE_BUFFER bytes of this answer wait for flow-control window,
        the socket is drained and the connection's unsent answers are within its limit (a
        client that stops reading holds its server streams' writers, not our memory)."""
        while not self.local_closed:
            if sum(len(p) for _, p, _ in self.outbox) > WRITE_BUFFER:
                self.drained = self.conn.loop.create_future()
                await self.drained
            elif not self.conn.can_write():
                await self.conn.write_ready()
            else:
                return

    def _drop_outbox(self) -> None:
        self.conn.unsent -= sum(len(p) for is_data, p, _ in self.outbox if is_data)
        self.outbox.clear()

    def pumped(self) -> None:
        """The connection sent what the windows allowed: wake a waiting writer."""
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def credit(self, nbytes: int) -> None:
        """Give `nbytes` of this stream's receive window back (batched: half a window)."""
        if self.remote_closed:
            return
        self.unacked += nbytes
        if self.unacked >= STREAM_WINDOW // 2:
            self.conn.window_update(self.id, self.unacked)
            self.recv_window += self.unacked
            self.unacked = 0

    def consumed(self) -> None:
        """The handler read the next message of a streaming request: its bytes go back to
        both windows."""
        if self.owed:
            conn_bytes, stream_bytes = self.owed.popleft()
            self.held -= conn_bytes
            self.conn.refund(conn_bytes)
            self.credit(stream_bytes)

    def release(self) -> None:
        """The stream is done with its request bytes (ended, reset, failed): refund them."""
        held, self.held = self.held, 0
        self.owed.clear()
        if held:
            self.conn.refund(held)

    def _queue(self, is_data: bool, payload: bytes, end_stream: bool) -> None:
        if self.local_closed:
            return
        if is_data:
            self.conn.unsent += len(payload)
        self.outbox.append((is_data, payload, end_stream))
        self.conn.pump(self)

    # request side
    def receive(self, data: bytes, end_stream: bool) -> None:
        """DATA payload (padding stripped) of this stream, already counted in `held`. A
        message split over frames waits in `buffer` (grown in place: a 4 MiB message arrives
        in 256 frames)."""
        buffer: bytes | bytearray = data
        if self.buffer:
            self.buffer += data
            buffer = self.buffer
        offset = 0
        while len(buffer) - offset >= 5:
            compressed, length = _MESSAGE_PREFIX.unpack_from(buffer, offset)
            limit = self.conn.max_body
            if length > limit:
                self.conn.stats.refuse(Refusal.BODY_TOO_LARGE)
                self.fail(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"Received message larger than max ({length} vs. {limit})",
                )
                return
            end = offset + 5 + length
            if end > len(buffer):
                break
            message = bytes(buffer[offset + 5 : end])
            offset = end
            if compressed:
                try:
                    message = decompress(message, self.encoding, self.conn.max_inflated)
                except InflatedTooLarge as exc:
                    self.conn.stats.refuse(Refusal.INFLATED_TOO_LARGE)
                    self.fail(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
                    return
                except (ValueError, zlib.error) as exc:
                    self.fail(grpc.StatusCode.UNIMPLEMENTED, str(exc))
                    return
            if not self._deliver(message, length + 5):
                return
        if buffer is self.buffer:
            del self.buffer[:offset]
        elif offset < len(buffer):
            self.buffer = bytearray(buffer[offset:])
        if len(self.buffer) >= 5 and not end_stream:
            self._make_room()
        if end_stream:
            self.end_of_request()

    def _make_room(self) -> None:
        """The buffered message is incomplete: if the rest of it cannot fit in the stream
        window, grant what it lacks now (refunded later as its bytes would have been), or a
        message larger than the window could never arrive."""
        missing = 5 + _MESSAGE_PREFIX.unpack_from(self.buffer)[1] - len(self.buffer)
        deficit = missing - self.recv_window
        if deficit > 0:
            self.conn.window_update(self.id, deficit)
            self.recv_window += deficit
            self.precredited += deficit

    def _deliver(self, message: bytes, size: int) -> bool:
        """Hand one request message (`size` bytes on the wire) on; False: the call failed."""
        if self.handler.request_streaming:
            early = min(self.precredited, size)
            self.precredited -= early
            self.owed.append((size, size - early))
            self.context.deliver(message)
            return True
        self.precredited = 0
        if self.request is not None:
            self.fail(grpc.StatusCode.UNIMPLEMENTED, "a unary call with more than one message")
            return False
        self.request = message
        return True

    def end_of_request(self) -> None:
        self.remote_closed = True
        if self.handler.request_streaming:
            self.context.end_inbox()
        elif self.task is None and not self.local_closed:
            if self.buffer or self.request is None:
                self.fail(grpc.StatusCode.INTERNAL, "a unary call without one complete message")
                return
            self.start()
        if self.local_closed:
            self.conn.forget(self)

    def start(self) -> None:
        if not self.handler.request_streaming:  # its one message is handed to the handler
            self.release()
        self.task = self.conn.loop.create_task(
            run_call(self.handler, self.context, self.request, self.conn.handler_failed)
        )

    def fail(self, code: grpc.StatusCode, details: str) -> None:
        """Answer `code` now (no handler ran or it is abandoned)."""
        if self.task is not None:
            self.task.cancel()
        self._drop_outbox()
        self.send_status(status_code(code), details, (), headers_only=not self.context.headers_sent)

    def reset(self) -> None:
        """The client reset the stream, or the connection is gone: abandon the call."""
        self.local_closed = self.remote_closed = True
        self._drop_outbox()
        self.pumped()
        # a handler that swallows the cancellation (some Redis client paths do) still reads
        # the end of its requests and returns
        self.context.end_inbox()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        else:
            self.context.finish(cancelled=True)


def _framed(payload: bytes) -> bytes:
    """A gRPC length-prefixed message (never compressed)."""
    return _MESSAGE_PREFIX.pack(0, len(payload)) + payload
