"""The delivery log: one record per webhook attempt, and per alert suppressed without one.

`DeliveryLog` is the port (the billing store's alert_log implements it too); this module has an
in-memory log (tests, the demo) and a Redis-stream log (`KeySpace.delivery_log()`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from redis.asyncio import Redis

from gatekeeper.store.keys import KeySpace

__all__ = [
    "DeliveryAttempt",
    "DeliveryLog",
    "DeliveryOutcome",
    "MemoryDeliveryLog",
    "RedisDeliveryLog",
]


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # failed transiently; another attempt is scheduled
    DEAD_LETTERED = "dead_lettered"  # the last attempt failed; written to the dead letter
    SUPPRESSED = "suppressed"  # not sent: muted, duplicate, stale, or no endpoint wants it


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One attempt (attempt >= 1) or one suppression (attempt 0).

    endpoint: the endpoint's display url ("" when no endpoint was involved).
    webhook_id: the alert or digest id (the `webhook-id` header).
    alert_ids: the alerts the delivery carries (one, or a digest's).
    status: HTTP status, None when no response arrived; error: why it failed or was suppressed.
    latency_ms: request start to response (0 for suppressions). time: attempt start, UTC.
    """

    endpoint: str
    webhook_id: str
    customer: str
    attempt: int
    outcome: DeliveryOutcome
    status: int | None
    error: str | None
    latency_ms: float
    time: datetime
    alert_ids: tuple[str, ...] = ()


class DeliveryLog(Protocol):
    async def record(self, attempt: DeliveryAttempt) -> None:
        """Store one record. May raise the store's errors (the notifier then retries later)."""
        ...


@dataclass
class MemoryDeliveryLog:
    """Keeps every record in a list (unbounded: tests and demos only)."""

    records: list[DeliveryAttempt] = field(default_factory=list)

    async def record(self, attempt: DeliveryAttempt) -> None:
        self.records.append(attempt)


class RedisDeliveryLog:
    """Appends records to the `KeySpace.delivery_log()` stream, trimmed to about `max_len`
    entries (XADD MAXLEN ~). Raises redis errors."""

    def __init__(self, *, redis: Redis, keys: KeySpace, max_len: int = 100_000) -> None:
        self._redis = redis
        self._stream = keys.delivery_log()
        self._max_len = max_len

    async def record(self, attempt: DeliveryAttempt) -> None:
        fields: dict[str, str] = {
            "endpoint": attempt.endpoint,
            "webhook_id": attempt.webhook_id,
            "customer": attempt.customer,
            "attempt": str(attempt.attempt),
            "outcome": attempt.outcome.value,
            "status": "" if attempt.status is None else str(attempt.status),
            "error": attempt.error or "",
            "latency_ms": f"{attempt.latency_ms:.3f}",
            "time_us": str(int(attempt.time.timestamp() * 1_000_000)),
            "alert_ids": ",".join(attempt.alert_ids),
        }
        await self._redis.xadd(
            self._stream,
            fields,  # type: ignore[arg-type]
            maxlen=self._max_len,
            approximate=True,
        )
