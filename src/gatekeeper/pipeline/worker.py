"""The billing worker: consumer group `gatekeeper-billing` over every partition's usage stream.

Loops (STYLE rule 7): `run()` supervises a reader (XREADGROUP COUNT/BLOCK over all streams), a
taker (at start and every `liveness.check_interval_s`: the entries of consumers whose heartbeat
is gone, claimed at once — store/consumers.py), a reclaimer (XAUTOCLAIM of entries idle >=
min_idle_ms, from any stuck consumer), a writer (BillingSink: store, then XACK) and a trimmer,
and keeps this consumer's heartbeat; `run_once()` / `drain()` do the same steps inline for
tests; `stop()` ends `run()` after the batches in hand are stored and acknowledged, then marks
the consumer stopped so the next worker takes over what it still holds at once.

Memory is bounded: at most `max_in_flight` entries are read but not yet committed; the reader
waits for the writer (backpressure) rather than buffering. A loop that dies makes `health.ready`
False and `run()` raise `WorkerFailed`; handled errors are logged with context and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from gatekeeper.backoff import Backoff
from gatekeeper.billing import BillingCalendar, BillingStore, BillingStoreError
from gatekeeper.clock import Clock
from gatekeeper.errors import StoreUnavailable
from gatekeeper.loop import retry, transient_types
from gatekeeper.pipeline.capacity import Capacity
from gatekeeper.pipeline.deadletter import DeadLetter
from gatekeeper.pipeline.health import WorkerHealth, WorkerStats
from gatekeeper.pipeline.sink import BillingSink
from gatekeeper.pipeline.trim import StreamTrimmer
from gatekeeper.store.consumers import Entry, GroupConsumer, Liveness
from gatekeeper.store.keys import KeySpace

if TYPE_CHECKING:
    from gatekeeper.tracing import Tracing

__all__ = ["BILLING_GROUP", "BillingWorker", "WorkerFailed", "WorkerOptions", "consumer_name"]

log = logging.getLogger(__name__)

BILLING_GROUP = "gatekeeper-billing"
_EXPECTED = (BillingStoreError, RedisError, OSError, StoreUnavailable)


def consumer_name() -> str:
    """Unique per process (and per worker in it): host, pid and random bits. What a stopped
    or crashed process held is taken over through its heartbeat (store/consumers.py), so the
    name need not survive a restart."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    group: str = BILLING_GROUP
    consumer: str = field(default_factory=consumer_name)
    batch: int = 1000  # entries per store transaction, at most
    block_ms: int = 1000  # XREADGROUP BLOCK; also the longest stop() waits for a read
    max_in_flight: int = 4000  # entries read and not yet committed + acknowledged, at most
    min_idle_ms: int = 30_000  # reclaim entries pending this long with any (live) consumer
    reclaim_interval_s: float = 5.0
    max_tries: int = 5  # deliveries before an entry that keeps failing is dead-lettered
    trim_interval_s: float = 30.0  # 0 = never trim
    backoff_s: float = 0.1  # first retry delay after a handled error, doubling
    max_backoff_s: float = 5.0
    liveness: Liveness = field(default_factory=Liveness)  # heartbeat; dead consumers' entries

    def __post_init__(self) -> None:
        if self.batch < 1 or self.max_in_flight < self.batch or self.max_tries < 1:
            raise ValueError("need batch >= 1, max_in_flight >= batch, max_tries >= 1")


class WorkerFailed(RuntimeError):
    """A worker loop died of an unexpected error (the process should exit non-zero)."""


class BillingWorker:
    def __init__(
        self,
        *,
        redis: Redis,
        store: BillingStore,
        keys: KeySpace,
        calendar: BillingCalendar,
        clock: Clock,
        options: WorkerOptions | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """`tracing`: each batch committed is a span linked to its events' decisions."""
        self.options = opts = options or WorkerOptions()
        self._redis = redis
        self._streams = keys.all_usage_streams()
        self.stats = WorkerStats()
        self.health = WorkerHealth()
        dead = DeadLetter(redis=redis, keys=keys, group=opts.group, consumer=opts.consumer)
        self.sink = BillingSink(
            redis=redis, store=store, calendar=calendar, dead_letter=dead, group=opts.group,
            max_tries=opts.max_tries, clock=clock, stats=self.stats, tracing=tracing,
        )  # fmt: skip
        self._trimmer = StreamTrimmer(redis=redis, streams=self._streams)
        self._group = GroupConsumer(
            redis=redis, keys=keys, group=opts.group, consumer=opts.consumer,
            streams=self._streams, liveness=opts.liveness,
        )  # fmt: skip
        self._stopping = asyncio.Event()
        self._rr = 0

    # -- steps shared by run() and run_once() ------------------------------------------------
    async def ensure_groups(self) -> None:
        """Create the consumer group on every usage stream (MKSTREAM, from id 0). Idempotent."""
        await self._group.ensure_groups(force=True)

    def _read_plan(self, room: int) -> tuple[list[str], int]:
        """Streams and per-stream COUNT so that one read returns at most `room` entries."""
        n = len(self._streams)
        if room >= n:
            return self._streams, room // n
        start, self._rr = self._rr, (self._rr + room) % n
        return [self._streams[(start + i) % n] for i in range(room)], 1

    async def _read(self, room: int, block_ms: int | None) -> list[Entry]:
        streams, count = self._read_plan(room)
        try:
            entries = await self._group.read(count=count, block_ms=block_ms, streams=streams)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group missing (stream deleted?), creating it again: %s", exc)
            await self.ensure_groups()
            return []
        self.stats.read += len(entries)
        return entries

    async def _reclaim(self, stream: str, cursor: str, count: int) -> tuple[str, list[Entry]]:
        cursor, claimed = await self._group.autoclaim(
            stream, min_idle_ms=self.options.min_idle_ms, start=cursor, count=count
        )
        entries = await self._billable(claimed)
        self.stats.reclaimed += len(entries)
        return cursor, entries

    async def _take_over(self, count: int) -> list[Entry]:
        """Entries of dead consumers (heartbeat gone), claimed at once; at most `count`."""
        entries = await self._billable(await self._group.take_over(count))
        self.stats.taken_over += len(entries)
        return entries

    async def _billable(self, claimed: list[Entry]) -> list[Entry]:
        """`claimed` without the entries deleted from the stream meanwhile (dead-lettered)."""
        for entry in claimed:
            if not entry.fields:
                await self.sink.dead_letter(
                    entry.stream, entry.id, None, "deleted from the stream before it was billed", 0
                )
        return [e for e in claimed if e.fields]

    # -- deterministic driving (tests, tools) ---------------------------------------------------
    async def run_once(self, *, block_ms: int | None = None) -> int:
        """Take over dead consumers' entries, reclaim idle ones, then read, store and
        acknowledge one batch of new ones.

        Returns the number of entries handled. Raises what the steps raise (nothing retried).
        """
        await self._group.ensure_groups()
        handled = 0
        while entries := await self._take_over(self.options.batch):
            await self.sink.handle(entries)
            handled += len(entries)
        for stream in self._streams:
            cursor = "0-0"
            while True:
                cursor, entries = await self._reclaim(stream, cursor, self.options.batch)
                if entries:
                    await self.sink.handle(entries)
                    handled += len(entries)
                if cursor == "0-0":
                    break
        entries = await self._read(self.options.batch, block_ms)
        if entries:
            await self.sink.handle(entries)
            handled += len(entries)
        return handled

    async def drain(self) -> int:
        """run_once() until a step handles nothing; returns the total handled."""
        total = 0
        while n := await self.run_once():
            total += n
        return total

    async def trim_once(self) -> int:
        removed = await self._trimmer.run_once()
        self.stats.trimmed += removed
        return removed

    # -- supervised loops ----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask run() to finish: no new reads; batches in hand are stored and acknowledged."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until stop() (one already asked before run() started counts: a SIGTERM right
        after start is not lost). Raises WorkerFailed when a loop died of an unexpected error."""
        async with self._group.alive():
            await self._run()

    async def _run(self) -> None:
        await self._retrying("start", self.ensure_groups)
        cap = Capacity(self.options.max_in_flight)
        queue: asyncio.Queue[list[Entry] | None] = asyncio.Queue()
        producers = [
            asyncio.create_task(self._supervise("reader", self._reader(cap, queue))),
            asyncio.create_task(self._supervise("taker", self._taker(cap, queue))),
            asyncio.create_task(self._supervise("reclaimer", self._reclaimer(cap, queue))),
        ]
        others = [
            asyncio.create_task(self._supervise("writer", self._writer(cap, queue))),
            asyncio.create_task(self._close_on_stop(cap)),
        ]
        if self.options.trim_interval_s > 0:
            others.append(asyncio.create_task(self._supervise("trimmer", self._trim_loop())))
        try:
            await asyncio.gather(*producers)
            await queue.put(None)  # producers done: the writer finishes what is queued
            await asyncio.gather(*others)
        finally:
            self._stopping.set()
            await cap.close()
            for task in (*producers, *others):
                if not task.done():
                    task.cancel()
            await asyncio.gather(*producers, *others, return_exceptions=True)
        dead = [h for h in self.health.loops.values() if h.failed]
        if dead:
            raise WorkerFailed(", ".join(f"{h.name}: {h.failed}" for h in dead))

    async def _close_on_stop(self, cap: Capacity) -> None:
        """Wake producers waiting for room once stopping (also when a loop died)."""
        await self._stopping.wait()
        await cap.close()

    async def _supervise(self, name: str, body: Awaitable[None]) -> None:
        health = self.health.loop(name)
        health.running = True
        try:
            await body
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.failed = repr(exc)
            self.stats.errors["loop_died"] += 1
            log.exception("worker loop %r died; worker not ready, stopping", name)
            self._stopping.set()
        finally:
            health.running = False

    async def _retrying(self, what: str, step: Callable[[], Awaitable[object]]) -> bool:
        """Run `step` until it succeeds (True) or stop() is asked while failing (False)."""

        def failed(exc: BaseException) -> None:
            code = type(exc).__name__
            if isinstance(exc, BillingStoreError):
                code = "store_transient" if exc.transient else "store"
            self.stats.errors[f"{what}:{code}"] += 1
            self.health.loop(what).last_error = str(exc)
            self.health.loop(what).errors += 1

        outcome = await retry(
            f"worker {what}",
            step,
            stopping=self._stopping,
            transient=transient_types(*_EXPECTED),
            backoff=Backoff(self.options.backoff_s, self.options.max_backoff_s),
            on_error=failed,
        )
        return outcome.done

    async def _reader(self, cap: Capacity, queue: asyncio.Queue[list[Entry] | None]) -> None:
        while not self._stopping.is_set():
            room = await cap.reserve(self.options.batch)
            if room == 0:
                break  # closed
            got: list[Entry] = []

            async def read(room: int = room, got: list[Entry] = got) -> None:
                got[:] = await self._read(room, self.options.block_ms)

            await self._retrying("reader", read)
            await cap.release(room - len(got))
            if got:
                await queue.put(got)

    async def _taker(self, cap: Capacity, queue: asyncio.Queue[list[Entry] | None]) -> None:
        """At start and every `liveness.check_interval_s`: dead consumers' entries, at once
        (again without waiting while a pass fills its room: more may be left)."""
        while not self._stopping.is_set():
            room = await cap.reserve(self.options.batch)
            if room == 0:
                return
            got: list[Entry] = []

            async def take(room: int = room, got: list[Entry] = got) -> None:
                got[:] = await self._take_over(room)

            ok = await self._retrying("taker", take)
            await cap.release(room - len(got))
            if got:
                await queue.put(got)
            if ok and len(got) >= room:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), self.options.liveness.check_interval_s
                )

    async def _reclaimer(self, cap: Capacity, queue: asyncio.Queue[list[Entry] | None]) -> None:
        while not self._stopping.is_set():
            for stream in self._streams:
                cursor = "0-0"
                while not self._stopping.is_set():
                    room = await cap.reserve(self.options.batch)
                    if room == 0:
                        return
                    got: list[Entry] = []

                    async def claim(
                        s: str = stream, c: str = cursor, room: int = room, got: list[Entry] = got
                    ) -> None:
                        nonlocal cursor
                        cursor, got[:] = await self._reclaim(s, c, room)

                    ok = await self._retrying("reclaimer", claim)
                    await cap.release(room - len(got))
                    if got:
                        await queue.put(got)
                    if not ok or cursor == "0-0":
                        break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.options.reclaim_interval_s)

    async def _writer(self, cap: Capacity, queue: asyncio.Queue[list[Entry] | None]) -> None:
        finished = False
        while not finished:
            chunk = await queue.get()
            if chunk is None:
                return
            batch = list(chunk)
            while len(batch) < self.options.batch and not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    finished = True
                    break
                batch.extend(more)
            try:
                await self._retrying("writer", lambda b=batch: self.sink.handle(b))  # type: ignore[misc]
            finally:
                await cap.release(len(batch))

    async def _trim_loop(self) -> None:
        while not self._stopping.is_set():
            await self._retrying("trimmer", self.trim_once)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.options.trim_interval_s)
