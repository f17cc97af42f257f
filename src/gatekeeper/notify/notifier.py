"""The alert notifier loop: alert streams in, signed webhooks out (DESIGN.md §2).

Consumer group `gatekeeper-notifier` over every partition's alert stream. An entry is XACKed
only once it is resolved: delivered to every endpoint that wants it, dead-lettered, or
suppressed (muted, stale, duplicate, unwanted). Until then it stays pending at this consumer
(held for a digest, waiting for a retry). The notifier keeps a heartbeat (store/consumers.py):
when its process stops (marked stopped) or dies (heartbeat expired), another notifier — or the
restarted one, whatever its name — takes its pending entries over at once and delivers them;
a restart with the same `consumer` name also re-reads its own pending entries. Entries of a
live notifier are only taken when idle for `reclaim_idle_ms` (it keeps the idle time of what
it holds fresh, and never takes back what another took over). Delivery is at least once per
endpoint, with a stable `webhook-id`; "delivered" marks make a second delivery of an id to an
endpoint happen only if the process died between a 2xx and its mark (or two notifiers
attempted it at the same moment: one was taken for dead while it was only paused).

Redis Cluster: streams of several slots are read with one XREADGROUP per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gatekeeper.backoff import Backoff
from gatekeeper.clock import Clock, SystemClock
from gatekeeper.engine.ports import PolicySource
from gatekeeper.events import AlertEvent
from gatekeeper.forward.cloudevent import JsonObject
from gatekeeper.loop import LoopState, run_loop, transient_types
from gatekeeper.notify.dispatch import Dispatcher, Finished, Job
from gatekeeper.notify.http import WebhookClient, backoff_s
from gatekeeper.notify.log import DeliveryLog, DeliveryOutcome, MemoryDeliveryLog
from gatekeeper.notify.payload import alert_payload
from gatekeeper.notify.records import (
    attempt_record,
    job_dead_letter,
    suppressed_record,
    unparseable_dead_letter,
)
from gatekeeper.notify.routing import Router, Tracked
from gatekeeper.notify.settings import Endpoint, NotifierSettings
from gatekeeper.notify.state import AlertMutes, NotifyState
from gatekeeper.store.consumers import Entry, GroupConsumer, Liveness
from gatekeeper.store.keys import KeySpace

if TYPE_CHECKING:
    from gatekeeper.tracing import Tracing

__all__ = ["GROUP", "AlertNotifier"]

GROUP = "gatekeeper-notifier"

log = logging.getLogger(__name__)

_PASS_RETRY = Backoff(0.2, 30.0)  # a failed pass (Redis, the store): 0.2 s doubling to 30 s

Sleep = Callable[[float], Awaitable[None]]
_Fields = Mapping[bytes | str, bytes | str]
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


class AlertNotifier:
    """`run()` until `stop()`; `run_once()` for one pass and `drain()` (tests) to finish what
    is due now. Keyword-only construction; `clock`, `sleep` and `rng` are injectable.

    consumer: this process's stable name in the group (keep it across restarts).
    policy: supplies units and the currency for payloads (optional).
    partitions: which partitions to read (default all).
    tracing: each delivery attempt is a span linked to the decisions of its alerts.
    liveness: heartbeat timing (store/consumers.py).
    """

    def __init__(
        self,
        *,
        redis: Redis,
        keys: KeySpace,
        endpoints: Sequence[Endpoint],
        settings: NotifierSettings,
        consumer: str,
        log_sink: DeliveryLog | None = None,
        policy: PolicySource | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        session: aiohttp.ClientSession | None = None,
        partitions: Sequence[int] | None = None,
        read_slice_ms: int = 100,
        max_tracked: int = 10_000,
        customer_endpoints: Callable[[str], Awaitable[Sequence[Endpoint]]] | None = None,
        on_delivered: Callable[[Sequence[AlertEvent], datetime], Awaitable[None]] | None = None,
        tracing: Tracing | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._settings = settings
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._policy = policy
        self._log: DeliveryLog = log_sink if log_sink is not None else MemoryDeliveryLog()
        ids = list(range(keys.partitions) if partitions is None else partitions)
        self._partition_of = {keys.alert_stream(p): p for p in ids}
        self._reader = GroupConsumer(
            redis=redis, keys=keys, group=GROUP, consumer=consumer,
            streams=list(self._partition_of), liveness=liveness,
        )  # fmt: skip
        self._state = NotifyState(redis=redis, keys=keys, dedupe_ttl_s=settings.dedupe_ttl_s)
        self.mutes = AlertMutes(redis=redis, keys=keys)
        self._router = Router(
            state=self._state,
            mutes=self.mutes,
            endpoints=endpoints,
            settings=settings,
            own=customer_endpoints,
        )
        self._on_delivered = on_delivered
        self._client = WebhookClient(
            clock=self._clock, timeout_s=settings.timeout_s, session=session
        )
        self._dispatch = Dispatcher(client=self._client, settings=settings, tracing=tracing)
        self._consumer = consumer
        self._read_slice_ms = max(1, read_slice_ms)
        self._max_tracked = max_tracked
        self._tracked: dict[tuple[str, str], Tracked] = {}
        self._results: list[Finished] = []  # harvested, not yet applied (survive Redis errors)
        self._to_ack: list[tuple[str, str]] = []
        self._check_own_pending = True
        self._next_reclaim = 0.0
        self._progress = False
        self._stopping = asyncio.Event()
        self._running = False
        self._died = False
        self.delivered = 0  # deliveries that got a 2xx
        self.dead_lettered = 0  # deliveries (or unparseable entries) dead-lettered
        self.alert_log_errors = 0  # delivered alerts the alert log could not be told about
        self.suppressed = 0  # alerts acked without a delivery
        self.lost = 0  # entries taken over by another notifier while this one held them
        self.loop = LoopState()  # the delivery loop's failures

    @property
    def healthy(self) -> bool:
        """False once `run()` died of an unexpected error (the worker is then not ready)."""
        return not self._died

    @property
    def running(self) -> bool:
        return self._running

    @property
    def backlog(self) -> int:
        """Entries read but not yet acked (held for digests, queued, in flight)."""
        return len(self._tracked)

    def stop(self) -> None:
        """Ask `run()` to return after its current pass."""
        self._stopping.set()

    async def aclose(self) -> None:
        """Cancel in-flight attempts (their entries stay pending) and close the HTTP session."""
        await self._dispatch.cancel()
        await self._client.aclose()

    async def run(self) -> None:
        """Deliver until `stop()`. Transient Redis failures are logged and retried after a
        backoff; anything else is logged, marks the notifier unhealthy, and is re-raised.
        On stop, in-flight attempts get `timeout_s` to finish and their results are applied;
        then the consumer is marked stopped (what it still holds is taken over at once)."""
        self._running = True
        try:
            async with self._reader.alive():
                await self._run()
        except Exception:
            self._died = True
            log.exception("notifier loop died: consumer=%s group=%s", self._consumer, GROUP)
            raise
        finally:
            await self.aclose()
            self._running = False

    async def _run(self) -> None:
        await run_loop(
            f"notifier {self._consumer}",
            lambda: self.run_once(block_ms=self._read_slice_ms),
            stopping=self._stopping,
            transient=transient_types(*_TRANSIENT),
            backoff=_PASS_RETRY,
            state=self.loop,
            on_error=self._failed,
            sleep=self._sleep,
        )
        await self._dispatch.wait(self._settings.timeout_s)
        with contextlib.suppress(*_TRANSIENT):
            await self._apply_results()
            await self._ack_done()

    def _failed(self, exc: BaseException) -> None:
        self._check_own_pending = True  # what it held may have been taken over meanwhile

    @property
    def consecutive_failures(self) -> int:
        return self.loop.failures

    @property
    def last_error(self) -> str | None:
        return self.loop.last_error or None

    async def drain(self, max_passes: int = 1_000) -> None:
        """Run passes without blocking until nothing more can happen at the clock's current
        time: no new entries, nothing due, no attempt in flight (tests drive the clock)."""
        for _ in range(max_passes):
            await self.run_once(block_ms=None)
            if self._dispatch.in_flight:
                await self._dispatch.wait(None)
                continue
            if not self._progress:
                return
        raise RuntimeError(f"notifier did not settle within {max_passes} passes")

    async def run_once(self, block_ms: int | None = None) -> int:
        """One pass: apply finished attempts, read (own pending after a restart, reclaimed,
        new: waiting up to `block_ms` when nothing is due), route, flush due digests, start
        due attempts, ack what is resolved. Returns entries acked. Raises redis errors."""
        self._progress = False
        await self._reader.ensure_groups()
        await self._apply_results()
        entries = await self._read(block_ms)
        now = self._clock.now()
        for entry in entries:
            if entry.ref not in self._tracked:
                await self._route(entry, now)
        jobs, released = await self._router.flush(now)
        self._queue(jobs)
        for item in released:
            self._maybe_done(item)
        self._progress |= bool(entries or jobs or released)
        self._progress |= self._dispatch.start_due(self._clock.now()) > 0
        await asyncio.sleep(0)  # let fresh attempts start before the next read blocks
        await self._apply_results()
        return await self._ack_done()

    async def _read(self, block_ms: int | None) -> list[Entry]:
        entries: list[Entry] = []
        size = self._settings.batch_size
        if self._check_own_pending:
            entries.extend(await self._reader.own_pending(size))
            self._check_own_pending = False
        if self._reader.take_over_due():
            entries.extend(await self._reader.take_over(size))
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_reclaim:
            self._next_reclaim = loop.time() + self._settings.reclaim_interval_s
            lost = await self._reader.touch(list(self._tracked))
            if lost:  # another notifier took them for dead; it delivers them now
                self.lost += len(lost)
                log.warning("%d held alert entries were taken over by another notifier", len(lost))
            entries.extend(await self._reader.reclaim(self._settings.reclaim_idle_ms, size))
        if len(self._tracked) >= self._max_tracked:
            return entries  # backpressure: resolve what we hold before reading more
        wait = self._wait_ms(block_ms) if not entries else None
        entries.extend(await self._reader.read(count=size, block_ms=wait))
        return entries

    def _wait_ms(self, block_ms: int | None) -> int | None:
        if block_ms is None or self._results:
            return None
        due = [t for t in (self._dispatch.next_due(), self._router.next_digest_due()) if t]
        if due:
            left = (min(due) - self._clock.now()).total_seconds() * 1000
            if left <= 0:
                return None
            block_ms = min(block_ms, int(left) + 1)
        return block_ms

    async def _route(self, entry: Entry, now: datetime) -> None:
        if not entry.fields:  # deleted from the stream while pending: nothing to send
            self._to_ack.append(entry.ref)
            return
        partition = self._partition_of[entry.stream]
        fields = entry.text()
        try:
            alert = AlertEvent.from_fields(cast(_Fields, fields))
        except ValueError as exc:
            log.error("unparseable alert entry %s %s: %s", entry.stream, entry.id, exc)
            reason = f"unparseable: {exc}"
            await self._state.dead_letter(unparseable_dead_letter(partition, fields, reason, now))
            self.dead_lettered += 1
            self._to_ack.append(entry.ref)
            return
        item = Tracked(entry, partition, alert, self._payload(alert, fields))
        outcome = await self._router.route(item, now)
        self._tracked[entry.ref] = item
        if isinstance(outcome, list):
            self._queue(outcome)
        self._maybe_done(item)  # before logging: a failed log write must not strand it
        if outcome == []:
            outcome = "already delivered to every endpoint"
        if isinstance(outcome, str):
            self.suppressed += 1
            await self._log.record(suppressed_record(alert, outcome, now))

    def _payload(self, alert: AlertEvent, fields: dict[str, str]) -> JsonObject:
        unit = currency = None
        if self._policy is not None:
            policy = self._policy.current()
            feature = policy.features.get(alert.feature or "")
            unit = feature.unit if feature is not None else None
            currency = policy.currency
        return alert_payload(alert, unit=unit, currency=currency, extra=fields)

    def _queue(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._dispatch.add(job)

    def _maybe_done(self, item: Tracked) -> None:
        if item.open <= 0:
            self._to_ack.append(item.entry.ref)

    async def _delivered(self, job: Job) -> None:
        """Tell the alert log (billing store) its alerts reached an endpoint; a failure there
        is logged and counted, never a reason to deliver again."""
        if self._on_delivered is None:
            return
        alerts = [t.alert for t in job.covers if isinstance(t, Tracked)]
        try:
            await self._on_delivered(alerts, self._clock.now())
        except Exception as exc:  # the store's errors: the delivery itself succeeded
            self.alert_log_errors += 1
            log.warning(
                "alerts %s delivered but not marked in the alert log: %r", job.alert_ids, exc
            )

    async def _apply_results(self) -> None:
        self._results.extend(self._dispatch.finished())
        while self._results:
            await self._apply(self._results[0])
            self._results.pop(0)
            self._progress = True

    async def _apply(self, done: Finished) -> None:
        job, result, s = done.job, done.result, self._settings
        job.last_status, job.last_error = result.status, result.error
        if result.ok:
            outcome = DeliveryOutcome.DELIVERED
            await self._state.mark_delivered(job.customer, job.endpoint.id, job.mark_ids)
            await self._delivered(job)
        elif result.retryable and job.attempts < s.max_attempts:
            outcome = DeliveryOutcome.RETRY
        else:
            outcome = DeliveryOutcome.DEAD_LETTERED
            why = result.error or f"HTTP {result.status}"
            reason = f"gave up after {job.attempts} attempts: {why}" if result.retryable else why
            await self._state.dead_letter(job_dead_letter(done, reason, self._clock.now()))
        await self._log.record(attempt_record(done, outcome))
        if outcome is DeliveryOutcome.RETRY:
            delay = backoff_s(
                job.attempts,
                result.retry_after_s,
                base_ms=s.backoff_base_ms,
                max_ms=s.backoff_max_ms,
                retry_after_max_s=s.retry_after_max_s,
                rng=self._rng,
            )
            job.due = max(self._clock.now(), done.started) + timedelta(seconds=delay)
            log.warning(
                "webhook attempt %d/%d failed (%s), next in %.3fs: endpoint=%s id=%s",
                *(job.attempts, s.max_attempts, result.error, delay),
                *(job.endpoint.display, job.webhook_id),
            )
            self._dispatch.add(job)
            return
        if outcome is DeliveryOutcome.DELIVERED:
            self.delivered += 1
        else:
            self.dead_lettered += 1
            log.error(
                "webhook dead-lettered: endpoint=%s id=%s", job.endpoint.display, job.webhook_id
            )
        for item in job.covers:
            item.open -= 1
            self._maybe_done(item)

    async def _ack_done(self) -> int:
        if not self._to_ack:
            return 0
        refs = list(dict.fromkeys(self._to_ack))
        acked = await self._reader.ack(refs)
        self._to_ack.clear()
        for ref in refs:
            self._tracked.pop(ref, None)
        return acked
