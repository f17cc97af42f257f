"""One gRPC call on the lean server: the servicer context it hands to handlers, and running a
`grpc.RpcMethodHandler` (the generated `add_*Servicer_to_server` registrations) to its status.

The context offers what grpc.aio's `ServicerContext` offers the servicers gatekeeper serves
(its own, Envoy's, health, reflection): abort, codes and details, metadata, deadlines, peer,
streaming reads and writes, done callbacks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn, Protocol, cast

import grpc
from grpc.aio import AbortError

__all__ = [
    "CallTransport",
    "InflatedTooLarge",
    "LeanContext",
    "decompress",
    "run_call",
    "status_code",
]

log = logging.getLogger(__name__)

Metadata = Sequence[tuple[str, str | bytes]]
_END = object()  # the client half-closed: no more request messages
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def status_code(code: grpc.StatusCode) -> int:
    return int(code.value[0])


def parse_timeout(value: str | None) -> float | None:
    """grpc-timeout ("250m", "10S", ...) in seconds; None when absent or malformed."""
    if not value or value[-1] not in _TIMEOUT_UNITS or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


class CallTransport(Protocol):
    """What a call needs of its HTTP/2 stream (implemented by the connection's stream)."""

    def send_headers(self, metadata: Metadata) -> None: ...
    def send_message(self, payload: bytes) -> None: ...
    def send_unary(self, payload: bytes) -> None: ...
    def send_status(
        self, code: int, details: str, metadata: Metadata, *, headers_only: bool
    ) -> None: ...
    def consumed(self) -> None:
        """The handler took the next request message (its bytes may be sent again)."""

    async def writable(self) -> None: ...


class LeanContext:
    """The `context` argument of a handler (grpc.aio.ServicerContext's methods)."""

    __slots__ = (
        "_callbacks",
        "_code",
        "_deadline",
        "_details",
        "_done",
        "_headers_sent",
        "_inbox",
        "_metadata",
        "_peer",
        "_serializer",
        "_stream",
        "_trailing",
        "cancelled_",
        "deserializer",
        "method",
    )

    def __init__(
        self,
        stream: CallTransport,
        *,
        method: str,
        metadata: tuple[tuple[str, str], ...],
        peer: str,
        timeout_s: float | None,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        """`serializer`, `deserializer`: the handler's (None: messages stay bytes)."""
        self._stream = stream
        self.method = method
        self._metadata = metadata
        self._peer = peer
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._code = grpc.StatusCode.OK
        self._details = ""
        self._trailing: Metadata = ()
        self._headers_sent = False
        self._callbacks: list[Callable[[LeanContext], object]] = []
        self._done = False
        self.cancelled_ = False
        self._inbox: asyncio.Queue[object] | None = None
        self._serializer: Callable[[Any], bytes] = serializer or _identity
        self.deserializer: Callable[[bytes], Any] = deserializer or _identity

    # status
    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> None:
        self.end(code, details, trailing_metadata)

    def end(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn:
        """abort() without the await: the call ends with `code` (raises AbortError)."""
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a status other than OK")
        self._code, self._details = code, details
        if trailing_metadata:
            self._trailing = trailing_metadata
        raise AbortError()

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None:
        self._trailing = trailing_metadata

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    # metadata, peer, deadline
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def set_compression(self, compression: object) -> None:
        """Answers are never compressed (accepted for API compatibility)."""

    def disable_next_message_compression(self) -> None:
        """Answers are never compressed (accepted for API compatibility)."""

    # lifecycle
    def cancelled(self) -> bool:
        return self.cancelled_

    def done(self) -> bool:
        return self._done

    def add_done_callback(self, callback: Callable[[LeanContext], object]) -> None:
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def finish(self, *, cancelled: bool) -> None:
        if self._done:
            return
        self._done = True
        self.cancelled_ = cancelled
        for callback in self._callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("done callback of %s failed", self.method)

    # streaming
    async def send_initial_metadata(self, initial_metadata: Metadata) -> None:
        if self._headers_sent:
            raise RuntimeError("initial metadata was already sent")
        self._headers_sent = True
        self._stream.send_headers(initial_metadata)

    @property
    def headers_sent(self) -> bool:
        return self._headers_sent

    def serialize(self, message: Any) -> bytes:
        return self._serializer(message)

    async def write(self, message: Any) -> None:
        self.write_bytes(self._serializer(message))
        await self._stream.writable()

    def write_bytes(self, payload: bytes) -> None:
        if not self._headers_sent:
            self._headers_sent = True
            self._stream.send_headers(())
        self._stream.send_message(payload)

    def answer_unary(self, payload: bytes) -> bool:
        """The whole answer in one go when it is a plain OK (no metadata sent or set); False:
        the caller sends it piece by piece."""
        if self._headers_sent or self._trailing:
            return False
        self._headers_sent = True
        self._stream.send_unary(payload)
        self.finish(cancelled=False)
        return True

    async def read(self) -> Any:
        """The next request message, or grpc.aio.EOF once the client half-closed."""
        assert self._inbox is not None
        item = await self._inbox.get()
        if item is _END:
            self._inbox.put_nowait(_END)  # every later read sees the end too
            return grpc.aio.EOF
        payload = cast(bytes, item)
        self._stream.consumed()
        return self.deserializer(payload)

    async def requests(self) -> AsyncIterator[Any]:
        while True:
            message = await self.read()
            if message is grpc.aio.EOF:
                return
            yield message

    def open_inbox(self) -> None:
        """A streaming request: its messages are delivered here for read()."""
        self._inbox = asyncio.Queue()

    def deliver(self, message: bytes) -> None:
        """A request message of a streaming request, for read()."""
        assert self._inbox is not None
        self._inbox.put_nowait(message)

    def end_inbox(self) -> None:
        if self._inbox is not None:
            self._inbox.put_nowait(_END)

    def send_status(self) -> None:
        code = status_code(self._code)
        details = self._details if code else ""
        self._stream.send_status(code, details, self._trailing, headers_only=not self._headers_sent)


class InflatedTooLarge(Exception):
    """A compressed message inflates past the limit (answered RESOURCE_EXHAUSTED)."""


_WBITS = {"gzip": 31, "deflate": 15}


def decompress(payload: bytes, encoding: str | None, limit: int) -> bytes:
    """A message with the compressed flag, in the call's grpc-encoding, inflated to at most
    `limit` bytes (a 4 MiB gzip bomb must not become gigabytes: it is inflated in one bounded
    step and dropped). Raises InflatedTooLarge past `limit`; ValueError or zlib.error for an
    unknown encoding or a corrupt or truncated message."""
    wbits = _WBITS.get(encoding or "")
    if wbits is None:
        raise ValueError(f"unsupported grpc-encoding {encoding!r}")
    inflater = zlib.decompressobj(wbits=wbits)
    message = inflater.decompress(payload, limit + 1)
    if len(message) > limit:
        raise InflatedTooLarge(f"Received message larger than max (inflated past {limit} bytes)")
    if not inflater.eof:
        raise ValueError(f"a truncated {encoding} message")
    return message


async def run_call(
    handler: grpc.RpcMethodHandler,
    context: LeanContext,
    request: bytes | None,
    failed: Callable[[str], None],
) -> None:
    """Run `handler` to its end and send its status. `request`: the one message of a unary
    request (None for a streaming request, read from the context's inbox). Cancellation (the
    client reset the stream, the connection dropped) sends nothing. A handler that raises (a
    bug) is logged, answered UNKNOWN and reported to `failed` with the method's path."""
    try:
        if handler.request_streaming:
            argument: Any = context.requests()
        else:
            try:
                argument = context.deserializer(request or b"")
            except Exception as exc:
                log.info("%s: request not deserializable: %s", context.method, exc)
                context.end(grpc.StatusCode.INTERNAL, "Failed to deserialize request")
        if handler.response_streaming:
            behavior = handler.stream_stream if handler.request_streaming else handler.unary_stream
            result = behavior(argument, context)
            if inspect.isasyncgen(result):
                async for message in result:
                    await context.write(message)
            elif inspect.isawaitable(result):
                await result
            elif result is not None:  # grpc.aio would run a sync handler on a thread
                raise TypeError(f"{context.method}: a streaming handler must be async")
        else:
            behavior = handler.stream_unary if handler.request_streaming else handler.unary_unary
            response = behavior(argument, context)
            if inspect.isawaitable(response):
                response = await response
            if context.code() == grpc.StatusCode.OK:
                if response is None:
                    context.end(grpc.StatusCode.INTERNAL, "the handler returned no response")
                payload = context.serialize(response)
                if context.answer_unary(payload):
                    return
                context.write_bytes(payload)
    except AbortError:
        pass
    except asyncio.CancelledError:
        context.finish(cancelled=True)
        return
    except Exception as exc:
        log.exception("gRPC handler %s failed", context.method)
        failed(context.method)
        context.set_code(grpc.StatusCode.UNKNOWN)
        context.set_details(f"Unexpected {type(exc).__name__}: {exc}")
    context.send_status()
    context.finish(cancelled=False)


def _identity(payload: Any) -> Any:
    return payload
