"""ext_authz in Envoy's HTTP mode (`http_service`): the fast path (DESIGN.md §6, port 9192).

gatekeeper's HTTP/1.1 server (net/http1.py: httptools parser, keep-alive, requests on one
connection answered in order) hands every request to the same Authorizer as the gRPC mode and
writes its Answer back: 200 + headers for the upstream and the client, or the denial's status,
headers and problem+json body. Envoy copies headers according to the filter's
`authorization_response` lists; dynamic metadata travels as `x-gatekeeper-meta-*` headers
(`dynamic_metadata_from_headers`).

Differences from the gRPC mode (Envoy's, not ours): no per-route context_extensions (usage
comes from the route table), and a 5xx answer is an authorization *error* for Envoy, which
answers its own `status_on_error` (the 503 problem body is dropped).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from gatekeeper.edge import Answer, EdgeRequest
from gatekeeper.edge.answers import META_HEADER_PREFIX
from gatekeeper.model import frozen_map
from gatekeeper.net.guards import NetStats
from gatekeeper.net.http1 import Http1Server
from gatekeeper.net.limits import NetLimits

__all__ = ["META_PREFIX", "AuthzHttpServer", "render_answer"]

META_PREFIX = META_HEADER_PREFIX
Handler = Callable[[EdgeRequest], Awaitable[Answer]]
_REASONS = {s.value: s.phrase for s in HTTPStatus}
# Envoy's HTTP-mode spelling of OkHttpResponse.headers_to_remove
HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"


def render_answer(answer: Answer, *, keep_alive: bool, head: bool = False) -> bytes:
    """The HTTP/1.1 response Envoy's http_service mode expects for `answer`.

    `head`: the check was a HEAD request (Envoy forwards the client's method), whose answer
    has no body — one after it was a protocol error that cost Envoy the connection. Header
    values go out as UTF-8, the bytes Envoy passes on (as the gRPC mode's strings)."""
    status = 503 if answer.unavailable else answer.status
    allowed = answer.allowed
    lines = [_status_line(status)]
    if allowed:
        lines += [f"{name}: {value}\r\n" for name, value in answer.upstream_headers]
    lines += [f"{name}: {value}\r\n" for name, value in answer.client_headers]
    if allowed and answer.upstream_headers_to_remove:
        removed = ", ".join(answer.upstream_headers_to_remove)
        lines.append(f"{HEADERS_TO_REMOVE}: {removed}\r\n")
    body = b"" if allowed else answer.body
    lines += [f"{_meta_name(key)}{value}\r\n" for key, value in answer.metadata.items()]
    lines.append(f"content-length: {len(body)}\r\n\r\n" if keep_alive else
                 f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")  # fmt: skip
    start = "".join(lines).encode()
    return start if head else start + body


@functools.cache
def _status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"


@functools.cache
def _meta_name(key: str) -> str:
    """`x-gatekeeper-meta-decision-id: ` for the metadata key `decision_id`."""
    return f"{META_PREFIX}{key.replace('_', '-')}: "


class AuthzHttpServer:
    """Serves `handler` (the authorizer's check) on host:port until stop()."""

    def __init__(self, handler: Handler, *, limits: NetLimits | None = None) -> None:
        self._handler = handler
        self.server = Http1Server(self._answer, limits=limits)

    async def _answer(
        self, method: str, path: str, headers: dict[str, str], keep_alive: bool
    ) -> bytes:
        request = EdgeRequest(
            method=method,
            path=path,
            headers=frozen_map(headers),
            request_id=headers.get("x-request-id", ""),
        )
        answer = await self._handler(request)
        return render_answer(answer, keep_alive=keep_alive, head=method == "HEAD")

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def net_stats(self) -> NetStats:
        """What clients made the server refuse, by reason."""
        return self.server.stats

    @property
    def connections(self) -> int:
        return len(self.server.connections)

    @property
    def handler_failures(self) -> int:
        """Checks whose handler raised (answered 500; a bug)."""
        return self.server.handler_failures

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen; `reuse_port` shares the port with the processes of one `serve --workers N`.
        Raises OSError when the port is taken."""
        return await self.server.start(host, port, reuse_port=reuse_port)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let in-flight answers finish (up to grace_s), close connections."""
        await self.server.stop(grace_s)
