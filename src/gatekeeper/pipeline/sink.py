"""The billing sink: delivered stream entries -> billing store -> XACK (or dead letter).

Exactly once = at-least-once delivery + an idempotent store: an entry is acknowledged only after
the transaction holding its event committed (or found it already stored), so a crash anywhere
leaves it pending, to be reclaimed and stored again as a no-op. An entry that cannot be parsed
or stored is left pending; once it has been delivered `max_tries` times it is moved to the
dead-letter stream (copy + XACK atomically).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from gatekeeper.billing import BillingCalendar, BillingStore, BillingStoreError
from gatekeeper.billing.protocol import RecordResult
from gatekeeper.billing.types import BilledEvent
from gatekeeper.clock import Clock, to_us
from gatekeeper.events import UsageEvent
from gatekeeper.pipeline.deadletter import DeadLetter
from gatekeeper.pipeline.health import WorkerStats
from gatekeeper.store.consumers import Entry
from gatekeeper.tracing.tracer import end_span

if TYPE_CHECKING:
    from gatekeeper.tracing import Tracing

__all__ = ["BillingSink"]

log = logging.getLogger(__name__)


class BillingSink:
    def __init__(
        self,
        *,
        redis: Redis,
        store: BillingStore,
        calendar: BillingCalendar,
        dead_letter: DeadLetter,
        group: str,
        max_tries: int,
        clock: Clock,
        stats: WorkerStats,
        tracing: Tracing | None = None,
    ) -> None:
        """`tracing`: each batch's commit is a span linked to the decisions of its events."""
        self._redis = redis
        self._tracing = tracing
        self._store = store
        self._calendar = calendar
        self._dead = dead_letter
        self._group = group
        self._max_tries = max_tries
        self._clock = clock
        self.stats = stats

    async def handle(self, entries: Sequence[Entry]) -> None:
        """Store, then acknowledge, a batch; failed entries are retried later or dead-lettered.

        Raises BillingStoreError (transient only) or a redis error: then nothing of this batch
        was acknowledged and the caller retries the whole batch (the store makes that a no-op
        for what did commit).
        """
        parsed: list[tuple[Entry, UsageEvent]] = []
        bad: list[tuple[Entry, str]] = []
        for entry in entries:
            try:
                event = UsageEvent.from_fields(entry.fields)  # type: ignore[arg-type]
            except ValueError as exc:
                self.stats.errors["parse"] += 1
                bad.append((entry, f"unparseable: {exc}"))
                continue
            parsed.append((entry, event))
        await self._calendar.prepare(event.customer for _, event in parsed)
        good = [(entry, self._calendar.bill(event, entry.id)) for entry, event in parsed]
        done = [e for e, _ in good]
        try:
            result = await self._record([b for _, b in good])
        except BillingStoreError as exc:
            if exc.transient:
                raise
            self.stats.errors["store"] += 1
            log.warning("batch of %d rejected by the store, isolating: %s", len(good), exc)
            done = []
            stored = duplicates = 0
            for entry, billed in good:
                try:
                    one = await self._store.record([billed])
                except BillingStoreError as one_exc:
                    if one_exc.transient:
                        raise
                    bad.append((entry, f"store rejected: {one_exc}"))
                    continue
                done.append(entry)
                stored += one.inserted
                duplicates += one.duplicates
        else:
            stored, duplicates = result.inserted, result.duplicates
        await self._ack(done)
        self.stats.stored += stored
        self.stats.duplicates += duplicates
        for entry, reason in bad:
            await self._give_up_or_retry(entry, reason)

    async def _record(self, billed: list[BilledEvent]) -> RecordResult:
        """One store transaction for the batch; traced: a span linked to each decision."""
        if self._tracing is None:
            return await self._store.record(billed)
        span = self._tracing.linked(
            "billing commit",
            (b.event.traceparent for b in billed),
            kind=SpanKind.CONSUMER,
            attributes={"gatekeeper.events": len(billed)},
        )
        try:
            result = await self._store.record(billed)
        except BaseException as exc:
            end_span(span, exc)
            raise
        span.set_attribute("gatekeeper.inserted", result.inserted)
        span.set_attribute("gatekeeper.duplicates", result.duplicates)
        end_span(span)
        return result

    async def _ack(self, entries: Sequence[Entry]) -> None:
        by_stream: dict[str, list[str]] = defaultdict(list)
        for e in entries:
            by_stream[e.stream].append(e.id)
        if not by_stream:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self._group, *ids)
            await pipe.execute()
        self.stats.acked += len(entries)

    async def _give_up_or_retry(self, entry: Entry, reason: str) -> None:
        pending = await self._redis.xpending_range(
            entry.stream, self._group, min=entry.id, max=entry.id, count=1
        )
        if not pending:
            return  # acknowledged meanwhile by another consumer (stored or dead-lettered)
        tries = int(pending[0]["times_delivered"])
        if tries < self._max_tries:
            self.stats.retried += 1
            log.warning(
                "entry %s of %s failed (try %d of %d), left pending: %s",
                entry.id, entry.stream, tries, self._max_tries, reason,
            )  # fmt: skip
            return
        await self.dead_letter(entry.stream, entry.id, entry.fields, reason, tries)

    async def dead_letter(
        self,
        stream: str,
        entry_id: str,
        fields: Mapping[bytes, bytes] | None,
        reason: str,
        tries: int,
    ) -> None:
        """Move one entry to the dead-letter stream (copy + XACK). Raises redis errors."""
        await self._dead.send(
            stream=stream,
            entry_id=entry_id,
            fields=fields,
            reason=reason,
            tries=tries,
            now_us=to_us(self._clock.now()),
        )
        self.stats.dead_lettered += 1
        log.error(
            "entry %s of %s dead-lettered to %s after %d tries: %s",
            entry_id, stream, self._dead.stream_for(stream), tries, reason,
        )  # fmt: skip
