"""One signed webhook POST, classified for the retry policy; and the backoff between attempts.

Outcomes of an attempt: 2xx delivered; 408, 429, 5xx, timeouts and connection errors
(refused, reset, DNS) are retryable, honouring `Retry-After`; any other status is final.
Retries are not slept here: the notifier schedules the next attempt, so one failing endpoint
never holds up another.

`public_only` posts (customers' own endpoints) go through a session whose resolver refuses a
host when any of its addresses is internal (notify/addresses.py), and the connection uses only
the addresses it checked; a literal internal host is refused before any connection. Both are
final (dead letter), not retried.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gatekeeper.clock import Clock
from gatekeeper.forward.http import backoff_s, parse_retry_after
from gatekeeper.notify.addresses import BlockedAddress, internal_address, url_host_problem
from gatekeeper.notify.signing import webhook_headers
from gatekeeper.settings import Secret

__all__ = ["AttemptResult", "PublicOnlyResolver", "WebhookClient", "backoff_s"]

_RETRY_STATUSES = frozenset({408, 429})
_BODY_EXCERPT = 300  # characters of a failure body kept in the reason


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """status None = no response (error says why). retry_after_s: the receiver's wish."""

    ok: bool
    retryable: bool
    status: int | None
    error: str | None
    latency_ms: float
    retry_after_s: float | None = None


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver, refusing (BlockedAddress) a host with any internal address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            addr = ip_address(result["host"].split("%", 1)[0])
            if internal_address(addr):
                raise BlockedAddress(f"refused: {host} resolves to internal address {addr}")
        return results

    async def close(self) -> None:
        await self._inner.close()


class WebhookClient:
    """Signs and POSTs webhook bodies. Owns an aiohttp session made on first use (or uses the
    one given, which it then does not close). `clock` stamps `webhook-timestamp`.
    `public_only` posts always use a second session of its own (PublicOnlyResolver)."""

    def __init__(
        self,
        *,
        clock: Clock,
        timeout_s: float,
        session: aiohttp.ClientSession | None = None,
        user_agent: str = "gatekeeper-webhooks/1",
    ) -> None:
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None
        self._user_agent = user_agent
        self._public: tuple[aiohttp.ClientSession, PublicOnlyResolver] | None = None

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        if self._public is not None:
            session, resolver = self._public
            self._public = None
            await session.close()
            await resolver.close()

    def _session_for(self, public_only: bool) -> aiohttp.ClientSession:
        if public_only:
            if self._public is None:
                resolver = PublicOnlyResolver()
                connector = aiohttp.TCPConnector(resolver=resolver)
                self._public = (aiohttp.ClientSession(connector=connector), resolver)
            return self._public[0]
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def post(
        self,
        url: str,
        webhook_id: str,
        body: bytes,
        secrets: Sequence[Secret],
        *,
        public_only: bool = False,
    ) -> AttemptResult:
        """One attempt; never raises for network or HTTP failures (they are the result).

        The timestamp is taken now, so each retry is signed afresh (receivers reject
        timestamps outside their tolerance) while `webhook-id` stays the same.
        public_only: refuse (final, not retryable) a host that is or resolves to an internal
        address, for customers' own endpoints.
        """
        if public_only:
            problem = url_host_problem(url)
            if problem is not None:
                return AttemptResult(False, False, None, f"refused: {problem}", 0.0)
        session = self._session_for(public_only)
        now = self._clock.now()
        headers = webhook_headers(webhook_id, int(now.timestamp()), body, secrets)
        headers["user-agent"] = self._user_agent
        started = time.perf_counter()
        try:
            async with session.post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                latency = (time.perf_counter() - started) * 1000.0
                if 200 <= resp.status < 300:
                    return AttemptResult(True, False, resp.status, None, latency)
                text = (await resp.text(errors="replace"))[:_BODY_EXCERPT]
                retryable = resp.status >= 500 or resp.status in _RETRY_STATUSES
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
                return AttemptResult(
                    False,
                    retryable,
                    resp.status,
                    f"HTTP {resp.status}: {text}",
                    latency,
                    retry_after if retryable else None,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            latency = (time.perf_counter() - started) * 1000.0
            if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
                exc.os_error, BlockedAddress
            ):
                return AttemptResult(False, False, None, str(exc.os_error), latency)
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return AttemptResult(False, True, None, reason, latency)
