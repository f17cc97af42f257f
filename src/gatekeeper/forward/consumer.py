"""Read the partition usage streams and forward them as CloudEvents, acking only what landed.

Consumer group `gatekeeper-forwarder` (created from id 0, so history is forwarded too) on each
usage stream, independent of the billing sink's group. A batch is XACKed only after the
receiver answered 2xx (or refused it for good and the dead-letter callback returned), so a
receiver outage or a crash loses nothing: the entries stay pending, this consumer re-reads its
own pending entries first, the entries of a consumer whose heartbeat is gone (stopped or dead)
are taken over at once, and XAUTOCLAIM hands entries idle for `reclaim_idle_ms` at a stuck one
to a live one (store/consumers.py). Delivery is at least once, always with the same CloudEvent
id (the usage event id), so an entry taken over from a forwarder that was only paused is at
worst sent twice with the same id.

Redis Cluster: streams of several slots are read with one XREADGROUP per slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeAlias, cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gatekeeper.backoff import Backoff
from gatekeeper.events import UsageEvent
from gatekeeper.forward.cloudevent import JsonObject, to_cloudevent
from gatekeeper.forward.http import DeadLetter, DeadLetterSink, ForwardUnavailable, SendResult
from gatekeeper.forward.settings import ForwarderSettings
from gatekeeper.loop import LoopState, run_loop, transient_types
from gatekeeper.store.consumers import Entry, GroupConsumer, Liveness
from gatekeeper.store.keys import KeySpace

__all__ = ["GROUP", "EventSender", "UsageForwarder"]

log = logging.getLogger(__name__)

GROUP = "gatekeeper-forwarder"
_Fields: TypeAlias = "Mapping[bytes | str, bytes | str]"
_TRANSIENT = (ForwardUnavailable, RedisConnectionError, RedisTimeoutError, OSError)


class EventSender(Protocol):
    async def send(self, events: Sequence[JsonObject]) -> SendResult: ...


class UsageForwarder:
    """The forwarding loop: `run()` until `stop()`; `run_once()` for one batch (tests).

    `consumer` names this process in the group. While `run()` runs it keeps a heartbeat: once
    it stops or dies, another forwarder (or the restarted one, whatever its name) takes over
    its pending entries at once; entries of a live forwarder are reclaimed only after
    `reclaim_idle_ms`. `healthy` turns False only if the loop dies of an unexpected error;
    transient failures (receiver or Redis down) are logged, paused on, and retried.
    """

    def __init__(
        self,
        *,
        redis: Redis,
        keys: KeySpace,
        sender: EventSender,
        dead_letter: DeadLetterSink,
        settings: ForwarderSettings,
        consumer: str,
        partitions: Sequence[int] | None = None,
        reclaim_idle_ms: int = 60_000,
        reclaim_interval_s: float = 30.0,
        read_slice_ms: int = 100,
        liveness: Liveness | None = None,
    ) -> None:
        self._sender = sender
        self._dead_letter = dead_letter
        self._settings = settings
        self._consumer = consumer
        ids = range(keys.partitions) if partitions is None else partitions
        self._group = GroupConsumer(
            redis=redis, keys=keys, group=GROUP, consumer=consumer,
            streams=[keys.usage_stream(p) for p in ids], liveness=liveness,
        )  # fmt: skip
        self._reclaim_idle_ms = reclaim_idle_ms
        self._reclaim_interval_s = reclaim_interval_s
        self._read_slice_ms = max(1, read_slice_ms)
        self._check_own_pending = True  # after start and after any failed batch
        self._next_reclaim = 0.0  # loop time; 0 = reclaim on the first pass
        self._stopping = asyncio.Event()
        self._running = False
        self._died = False
        self.forwarded = 0  # events acknowledged after delivery
        self.dead_lettered = 0  # entries acknowledged after dead-lettering
        self.loop = LoopState()  # the forwarding loop's failures

    @property
    def healthy(self) -> bool:
        """False once the loop died of an unexpected error (the worker is then not ready)."""
        return not self._died

    @property
    def running(self) -> bool:
        return self._running

    def stop(self) -> None:
        """Ask `run()` to return; an in-flight batch is abandoned unacked (sent again later)."""
        self._stopping.set()

    async def run(self) -> None:
        """Forward until `stop()`, keeping the heartbeat; marks the consumer stopped on return
        (an abandoned batch is then taken over at once). Re-raises (after logging, with
        `healthy` False) any error that is not a transient Redis or receiver failure."""
        self._running = True
        try:
            async with self._group.alive():
                await self._run()
        except Exception:
            self._died = True
            log.exception("forwarder loop died: consumer=%s group=%s", self._consumer, GROUP)
            raise
        finally:
            self._running = False

    async def _run(self) -> None:
        base, cap = self._settings.backoff_base_ms / 1000.0, self._settings.backoff_max_ms / 1000.0
        await run_loop(
            f"forwarder {self._consumer}",
            self.run_once,
            stopping=self._stopping,
            transient=transient_types(*_TRANSIENT),
            backoff=Backoff(min(2 * base, cap), cap),  # the first pause: twice the base
            state=self.loop,
            on_error=self._failed,
            abandon_on_stop=True,  # an abandoned batch stays pending: sent again later
        )

    def _failed(self, exc: BaseException) -> float | None:
        """After a failed batch: look at its own pending entries again; a receiver's
        Retry-After is the shortest pause."""
        self._check_own_pending = True
        return exc.retry_after_s if isinstance(exc, ForwardUnavailable) else None

    @property
    def consecutive_failures(self) -> int:
        return self.loop.failures

    @property
    def last_error(self) -> str | None:
        return self.loop.last_error or None

    async def run_once(self) -> int:
        """Collect one batch (own pending, reclaimed, then new entries up to `max_wait_ms`),
        forward it, and XACK it. Returns the number of entries acknowledged.

        Raises ForwardUnavailable (nothing of the batch acked) or Redis errors.
        """
        await self._group.ensure_groups()
        try:
            entries = await self._collect()
            if not entries:
                return 0
            return await self._forward(entries)
        except BaseException:
            self._check_own_pending = True
            raise

    async def _forward(self, entries: list[Entry]) -> int:
        good: list[tuple[Entry, JsonObject]] = []
        bad: list[tuple[Entry, str]] = []
        for entry in entries:
            try:
                usage = UsageEvent.from_fields(cast(_Fields, entry.fields))
                event = to_cloudevent(usage, source=self._settings.source)
                good.append((entry, event))
            except ValueError as exc:
                bad.append((entry, str(exc)))
        acked = 0
        if bad:
            reason = "; ".join(f"{e.stream} {e.id}: {why}" for e, why in bad)
            log.error("unparseable usage entries, dead-lettering: %s", reason)
            await self._dead_letter(
                DeadLetter(reason=reason, status=None, raw=tuple(e.text() for e, _ in bad))
            )
            acked += await self._ack([e for e, _ in bad])
            self.dead_lettered += len(bad)
        if good:
            result = await self._sender.send([event for _, event in good])
            acked += await self._ack([e for e, _ in good])
            if result is SendResult.DELIVERED:
                self.forwarded += len(good)
            else:
                self.dead_lettered += len(good)
        return acked

    async def _ack(self, entries: Sequence[Entry]) -> int:
        return await self._group.ack([e.ref for e in entries])

    async def _collect(self) -> list[Entry]:
        size = self._settings.batch_size
        batch: dict[tuple[str, str], Entry] = {}
        gone: list[Entry] = []
        if self._check_own_pending:
            self._add(batch, gone, await self._group.read(count=size, block_ms=None, from_id="0"))
            self._check_own_pending = bool(batch) or bool(gone)
        if len(batch) < size and self._group.take_over_due():
            self._add(batch, gone, await self._group.take_over(size - len(batch)))
        loop = asyncio.get_running_loop()
        if not batch and loop.time() >= self._next_reclaim:
            self._next_reclaim = loop.time() + self._reclaim_interval_s
            claimed = await self._group.reclaim(self._reclaim_idle_ms, size)
            if claimed:
                log.info("reclaimed %d idle entries", len(claimed))
            self._add(batch, gone, claimed)
        # "count + max wait": fill up to `batch_size`, never waiting past `max_wait_ms`
        deadline = loop.time() + self._settings.max_wait_ms / 1000.0
        while len(batch) < size and not self._stopping.is_set():
            left_ms = int((deadline - loop.time()) * 1000)
            if left_ms <= 0:
                break
            # short slices keep stop() prompt without cancelling a command mid-flight
            block = min(left_ms, self._read_slice_ms)
            self._add(batch, gone, await self._group.read(count=size - len(batch), block_ms=block))
        if gone:  # trimmed or deleted before we forwarded them: nothing left to send
            log.warning("acking %d pending entries that no longer exist", len(gone))
            await self._ack(gone)
        return list(batch.values())

    @staticmethod
    def _add(batch: dict[tuple[str, str], Entry], gone: list[Entry], got: list[Entry]) -> None:
        for entry in got:
            if not entry.fields:
                gone.append(entry)
            else:
                batch.setdefault(entry.ref, entry)
