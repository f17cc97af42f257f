"""The alert log: every alert the decision path raised, stored once in the billing store's
`alert_log` (what `GET /v1/customers/{id}/alerts` and the dashboard read), whether or not any
webhook endpoint wants it; the notifier marks it delivered when an endpoint took it.

A consumer group of its own (`gatekeeper-alert-log`) on every partition's alert stream; each
worker reads as its own consumer (the worker's name) and keeps a heartbeat (store/consumers.py):
entries read and not yet acknowledged when a worker stops or dies are taken over by another
(or the next) worker as soon as its heartbeat is gone, never after an idle timeout; a worker
restarted under the same name reads its own pending entries first. Entries idle for
`min_idle_ms` at a live but stuck consumer are reclaimed. Logging twice is harmless (the alert
id is the key), so an entry taken over from a worker that was only paused costs nothing.
(Workers before this one all read as consumer "alert-log", which keeps no heartbeat: what it
left pending is reclaimed once idle for `min_idle_ms`.)
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis

from gatekeeper.backoff import Backoff
from gatekeeper.billing import BillingStore
from gatekeeper.events import AlertEvent
from gatekeeper.loop import LoopState, run_loop
from gatekeeper.pipeline.failures import is_transient
from gatekeeper.store.consumers import Entry, GroupConsumer, Liveness
from gatekeeper.store.keys import KeySpace

__all__ = ["ALERT_LOG_GROUP", "AlertLog", "AlertLogStats"]

log = logging.getLogger(__name__)

ALERT_LOG_GROUP = "gatekeeper-alert-log"


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
        consumer: str,
        batch: int = 200,
        block_ms: int = 1000,
        min_idle_ms: int = 30_000,
        reclaim_interval_s: float = 5.0,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        liveness: Liveness | None = None,
    ) -> None:
        """`consumer`: this worker's name in the group (the billing worker's)."""
        self._store = store
        self._streams = keys.all_alert_streams()
        self._group = GroupConsumer(
            redis=redis, keys=keys, group=ALERT_LOG_GROUP, consumer=consumer,
            streams=self._streams, liveness=liveness,
        )  # fmt: skip
        self._batch = batch
        self._block_ms = block_ms
        self._min_idle_ms = min_idle_ms
        self._reclaim_interval_s = reclaim_interval_s
        self._next_reclaim = 0.0
        self._backoff = (backoff_s, max_backoff_s)
        self._stopping = asyncio.Event()
        self._own_pending = True  # first read what this name left unacknowledged
        self.stats = AlertLogStats()

    async def run_once(self, block_ms: int | None = None) -> int:
        """Read, log and acknowledge one batch; returns how many entries were handled.
        Raises redis and (transient) billing store errors: nothing of the batch was
        acknowledged then, and it is read again."""
        await self._group.ensure_groups()
        entries = await self._read(block_ms)
        for entry in entries:
            await self._log(entry)
        await self._group.ack([e.ref for e in entries])
        return len(entries)

    async def ensure_groups(self) -> None:
        """The consumer group on every alert stream (from the start). Idempotent."""
        await self._group.ensure_groups(force=True)

    async def _read(self, block_ms: int | None) -> list[Entry]:
        """Own pending entries (after a restart), else dead consumers' (when due), else idle
        ones (when due), else new ones."""
        per_stream = max(1, self._batch // len(self._streams))
        if self._own_pending:
            entries = await self._group.read(count=per_stream, block_ms=None, from_id="0")
            if entries:
                return entries
            self._own_pending = False
        if self._group.take_over_due():
            entries = await self._group.take_over(self._batch)
            if entries:
                return entries
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_reclaim:
            self._next_reclaim = loop.time() + self._reclaim_interval_s
            entries = await self._group.reclaim(self._min_idle_ms, self._batch)
            if entries:
                return entries
        return await self._group.read(count=per_stream, block_ms=block_ms)

    async def _log(self, entry: Entry) -> None:
        if not entry.fields:  # deleted from the stream (trimmed) before it was logged
            return
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

    async def run(self) -> None:
        """Until stop(); a Redis or billing store failure is logged and retried with backoff.
        Keeps the consumer's heartbeat meanwhile; marks it stopped on return."""
        async with self._group.alive():
            await self._run()

    async def _run(self) -> None:
        state = LoopState(errors_by_type=self.stats.errors)  # its errors are the stats' own
        await run_loop(
            "alert log",
            lambda: self.run_once(self._block_ms),
            stopping=self._stopping,
            transient=is_transient,
            backoff=Backoff(*self._backoff),
            state=state,
        )

    def stop(self) -> None:
        self._stopping.set()
