"""The alert log: every alert the decision path raised, stored once in the billing store's
`alert_log` (what `GET /v1/customers/{id}/alerts` and the dashboard read), whether or not any
webhook endpoint wants it; the notifier marks it delivered when an endpoint took it.

A consumer group of its own (`gatekeeper-alert-log`) on every partition's alert stream, with
one consumer name shared by every worker: entries read and not yet acknowledged when a worker
stops are read again by the next one at once (its own pending first), never after an idle
timeout. Logging twice is harmless (the alert id is the key), so two workers may share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gatekeeper.billing import BillingStore, BillingStoreError
from gatekeeper.events import AlertEvent
from gatekeeper.pipeline.streams import Entry, read_group
from gatekeeper.store.groups import ensure_group
from gatekeeper.store.keys import KeySpace

__all__ = ["ALERT_LOG_GROUP", "AlertLog", "AlertLogStats"]

log = logging.getLogger(__name__)

ALERT_LOG_GROUP = "gatekeeper-alert-log"
_CONSUMER = "alert-log"


@dataclass
class AlertLogStats:
    logged: int = 0  # new rows
    duplicates: int = 0  # already logged (a retry, a second worker)
    unreadable: int = 0  # entries that are no alert (acknowledged, logged as errors)
    errors: dict[str, int] = field(default_factory=dict)


class AlertLog:
    def __init__(
        self,
        *,
        redis: Redis,
        store: BillingStore,
        keys: KeySpace,
        batch: int = 200,
        block_ms: int = 1000,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._redis = redis
        self._store = store
        self._streams = keys.all_alert_streams()
        self._batch = batch
        self._block_ms = block_ms
        self._backoff = (backoff_s, max_backoff_s)
        self._stopping = asyncio.Event()
        self._own_pending = True  # first read what a stopped worker left unacknowledged
        self._ready = False
        self.stats = AlertLogStats()

    async def run_once(self, block_ms: int | None = None) -> int:
        """Read, log and acknowledge one batch; returns how many entries were handled.
        Raises redis and (transient) billing store errors: nothing of the batch was
        acknowledged then, and it is read again."""
        if not self._ready:
            await self.ensure_groups()
        entries = await self._read(block_ms)
        for entry in entries:
            await self._log(entry)
        await self._ack(entries)
        return len(entries)

    async def ensure_groups(self) -> None:
        """The consumer group on every alert stream (from the start). Idempotent."""
        for stream in self._streams:
            await ensure_group(self._redis, stream, ALERT_LOG_GROUP)
        self._ready = True

    async def _read(self, block_ms: int | None) -> list[Entry]:
        per_stream = max(1, self._batch // len(self._streams))
        if self._own_pending:
            entries = await read_group(
                self._redis, ALERT_LOG_GROUP, _CONSUMER, self._streams,
                count=per_stream, block_ms=None, from_id="0",
            )  # fmt: skip
            if entries:
                return entries
            self._own_pending = False
        return await read_group(
            self._redis, ALERT_LOG_GROUP, _CONSUMER, self._streams,
            count=per_stream, block_ms=block_ms,
        )  # fmt: skip

    async def _log(self, entry: Entry) -> None:
        try:
            alert = AlertEvent.from_fields(entry.fields)  # type: ignore[arg-type]
        except ValueError as exc:
            self.stats.unreadable += 1
            log.error("alert entry %s %s is no alert, not logged: %s", entry.stream, entry.id, exc)
            return
        if await self._store.insert_alert(alert, delivered_at=None):
            self.stats.logged += 1
        else:
            self.stats.duplicates += 1

    async def _ack(self, entries: Sequence[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.id)
        for stream, ids in by_stream.items():
            await self._redis.xack(stream, ALERT_LOG_GROUP, *ids)

    async def run(self) -> None:
        """Until stop(); a Redis or billing store failure is logged and retried with backoff."""
        delay, longest = self._backoff
        wait = delay
        while not self._stopping.is_set():
            try:
                await self.run_once(self._block_ms)
                wait = delay
            except (RedisError, OSError, BillingStoreError) as exc:
                if isinstance(exc, BillingStoreError) and not exc.transient:
                    raise
                name = type(exc).__name__
                self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
                log.warning("alert log: %s; retrying in %.1fs", exc, wait)
                with contextlib.suppress(TimeoutError):  # a stop() ends the wait
                    await asyncio.wait_for(self._stopping.wait(), wait)
                wait = min(wait * 2, longest)

    def stop(self) -> None:
        self._stopping.set()
