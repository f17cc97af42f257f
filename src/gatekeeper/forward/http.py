"""POST batches of CloudEvents to an HTTP ingest endpoint, with bounded, jittered retries.

One `send()` = one batch, `application/cloudevents-batch+json` (a JSON array of structured
events). Outcomes:

- 2xx: delivered.
- connection error, timeout, 408, 429, 5xx: retried with exponential backoff and full jitter
  (a `Retry-After` in seconds or as an HTTP date replaces the jittered delay), at most
  `max_attempts` POSTs; then `ForwardUnavailable` is raised and the caller keeps the batch.
- any other status (3xx, 4xx): the receiver will never take this batch as it is; it goes to
  the dead-letter callback with the reason, and `send()` reports DEAD_LETTERED.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import aiohttp

from gatekeeper.backoff import Backoff, Jitter
from gatekeeper.clock import Clock, SystemClock
from gatekeeper.forward.cloudevent import BATCH_CONTENT_TYPE, JsonObject
from gatekeeper.forward.settings import ForwarderSettings

__all__ = [
    "DeadLetter",
    "DeadLetterSink",
    "ForwardUnavailable",
    "HttpForwarder",
    "SendResult",
    "backoff_s",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({408, 429})
_BODY_EXCERPT = 300  # characters of a refusal body kept in the dead-letter reason


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A batch the receiver refused for good, or stream entries that could not be parsed.

    status: the HTTP status of the refusal, None when the batch never reached the receiver.
    events: the CloudEvents as they were (or would have been) sent.
    raw: unparseable stream entries as flat string fields (empty for HTTP refusals).
    """

    reason: str
    status: int | None
    events: tuple[JsonObject, ...] = ()
    raw: tuple[dict[str, str], ...] = ()


DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


class SendResult(StrEnum):
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"


class ForwardUnavailable(Exception):
    """Every attempt failed transiently (network, timeout, 408, 429, 5xx); retry the batch later.

    `transient` is always True: the batch is intact and must not be acknowledged.
    """

    transient = True

    def __init__(
        self, message: str, *, attempts: int, status: int | None, retry_after_s: float | None
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status
        self.retry_after_s = retry_after_s  # the receiver's last Retry-After, capped; seconds


def backoff_s(
    attempt: int,
    retry_after_s: float | None,
    *,
    base_ms: int,
    max_ms: int,
    retry_after_max_s: float,
    rng: random.Random,
) -> float:
    """Seconds before the attempt after `attempt` (1-based): the receiver's Retry-After
    (capped) when given, else full jitter uniform(0, min(max, base * 2**(attempt-1)))."""
    if retry_after_s is not None:
        return min(retry_after_s, retry_after_max_s)
    return Backoff(base_ms / 1000.0, max_ms / 1000.0, Jitter.FULL).delay(attempt, rng.random)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), else None.

    A date in the past gives 0; an unparseable value gives None (fall back to backoff).
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class HttpForwarder:
    """Sends CloudEvent batches to `settings.url`.

    Owns an aiohttp session created on first use (or uses the one passed in, which it then
    does not close). `sleep`, `clock` and `rng` are injectable so tests never really wait.
    Not safe for concurrent `send()` calls on one batch; distinct batches may overlap.
    """

    def __init__(
        self,
        *,
        settings: ForwarderSettings,
        dead_letter: DeadLetterSink,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._dead_letter = dead_letter
        self._session = session
        self._owns_session = session is None
        self._sleep = sleep
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()

    async def aclose(self) -> None:
        """Close the session if this forwarder created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": BATCH_CONTENT_TYPE, "Accept": "application/json"}
        if self._settings.auth_token is not None:
            headers["Authorization"] = f"Bearer {self._settings.auth_token.value}"
        return headers

    def backoff_s(self, attempt: int, retry_after: float | None) -> float:
        """Delay before the attempt after `attempt` (1-based): Retry-After if given, capped,
        else full jitter uniform(0, min(max, base * 2**(attempt-1))). Seconds."""
        s = self._settings
        return backoff_s(
            attempt, retry_after, base_ms=s.backoff_base_ms, max_ms=s.backoff_max_ms,
            retry_after_max_s=s.retry_after_max_s, rng=self._rng,
        )  # fmt: skip

    async def send(self, events: Sequence[JsonObject]) -> SendResult:
        """POST `events` as one batch until accepted, refused, or out of attempts.

        Returns DELIVERED (2xx) or DEAD_LETTERED (refused; the dead-letter callback returned).
        Raises ForwardUnavailable after `max_attempts` transient failures; whatever the
        dead-letter callback raises propagates (the batch then counts as not handled).
        """
        if not events:
            return SendResult.DELIVERED
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = json.dumps(list(events), separators=(",", ":")).encode()
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
        context = f"url={self._settings.url} events={len(events)} first_id={events[0].get('id')}"
        last_status: int | None = None
        last_reason = ""
        retry_after: float | None = None
        attempts = self._settings.max_attempts
        for attempt in range(1, attempts + 1):
            retry_after = None
            try:
                async with self._session.post(
                    self._settings.url,
                    data=body,
                    headers=self._headers(),
                    timeout=timeout,
                    allow_redirects=False,
                ) as resp:
                    last_status = resp.status
                    if 200 <= resp.status < 300:
                        if attempt > 1:
                            log.info("forwarded after %d attempts: %s", attempt, context)
                        return SendResult.DELIVERED
                    text = (await resp.text(errors="replace"))[:_BODY_EXCERPT]
                    last_reason = f"HTTP {resp.status}: {text}"
                    if resp.status not in _RETRY_STATUSES and resp.status < 500:
                        return await self._refused(events, resp.status, last_reason, context)
                    retry_after = parse_retry_after(
                        resp.headers.get("Retry-After"), self._clock.now()
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                last_status = None
                last_reason = f"{type(exc).__name__}: {exc}"
            if attempt < attempts:
                delay = self.backoff_s(attempt, retry_after)
                log.warning(
                    "forward attempt %d/%d failed (%s), retrying in %.3fs: %s",
                    attempt,
                    attempts,
                    last_reason,
                    delay,
                    context,
                )
                await self._sleep(delay)
        log.warning("forward gave up after %d attempts (%s): %s", attempts, last_reason, context)
        raise ForwardUnavailable(
            f"{self._settings.url} unavailable after {attempts} attempts: {last_reason}",
            attempts=attempts,
            status=last_status,
            retry_after_s=None if retry_after is None else self.backoff_s(attempts, retry_after),
        )

    async def _refused(
        self, events: Sequence[JsonObject], status: int, reason: str, context: str
    ) -> SendResult:
        log.error("receiver refused batch, dead-lettering (%s): %s", reason, context)
        await self._dead_letter(DeadLetter(reason=reason, status=status, events=tuple(events)))
        return SendResult.DEAD_LETTERED
