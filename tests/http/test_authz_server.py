"""The HTTP ext_authz server (the fast path) on its own: connection life cycle edge cases.

Answers, statuses and headers through a real Envoy are in tests/e2e (both transports).
"""

from __future__ import annotations

import asyncio

import pytest

from gatekeeper.edge import Answer, EdgeRequest
from gatekeeper.http.authz_server import AuthzHttpServer, render_answer

REQUEST = b"GET /v1/chat HTTP/1.1\r\nhost: a\r\nx-api-key: k\r\n\r\n"


async def _status_line(port: int, request: bytes) -> bytes:
    """One request on a new connection: the answer's status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


async def _wait_for(condition: object, what: str) -> None:
    for _ in range(500):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_client_gone_before_its_answer_leaves_the_server_serving(loop: str) -> None:
    """uvloop (what `gatekeeper serve` runs) raises on a write to a closed transport."""
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(_client_gone())
    else:
        asyncio.run(_client_gone())


async def _client_gone() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_then_allow(request: EdgeRequest) -> Answer:
        if request.headers.get("x-api-key") == "k":
            entered.set()
            await release.wait()
        return Answer(status=200, outcome="allowed")

    server = AuthzHttpServer(slow_then_allow)
    port = await server.start("127.0.0.1", 0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        await asyncio.wait_for(entered.wait(), 5)
        connection = next(iter(server.server.connections))
        answering = connection.writer
        assert answering is not None
        writer.close()  # Envoy times out or shuts down while the decision is in flight
        await _wait_for(lambda: not server.server.connections, "the server to see the close")
        release.set()
        await asyncio.wait_for(answering, 5)  # ends quietly: raised on a closed transport before
        assert answering.exception() is None

        other = REQUEST.replace(b"x-api-key: k", b"x-api-key: other")
        assert (await _status_line(port, other)).startswith(b"HTTP/1.1 200")
    finally:
        await server.stop(1.0)


def test_header_values_go_out_as_utf8_and_a_head_answer_has_no_body() -> None:
    """The bytes Envoy passes on are the gRPC mode's string, non-ASCII included."""
    denied = Answer(
        status=429,
        outcome="rate_limited",
        body=b'{"status":429}',
        client_headers=(("x-note", "größer-日本"),),
    )
    full = render_answer(denied, keep_alive=True)
    assert "x-note: größer-日本\r\n".encode() in full
    assert full.endswith(b'\r\n\r\n{"status":429}')
    head = render_answer(denied, keep_alive=True, head=True)
    assert head == full[: -len(denied.body)]  # same status line and headers, no body
    assert b"content-length: 14\r\n" in head


async def test_a_handler_that_raises_is_answered_500_and_counted() -> None:
    async def broken(request: EdgeRequest) -> Answer:
        if request.headers.get("x-api-key") == "k":
            raise RuntimeError("authorizer bug")
        return Answer(status=200, outcome="allowed")

    server = AuthzHttpServer(broken)
    port = await server.start("127.0.0.1", 0)
    try:
        assert (await _status_line(port, REQUEST)).startswith(b"HTTP/1.1 500")
        assert server.handler_failures == 1
        other = REQUEST.replace(b"x-api-key: k", b"x-api-key: other")
        assert (await _status_line(port, other)).startswith(b"HTTP/1.1 200")
        assert server.handler_failures == 1
    finally:
        await server.stop(1.0)
