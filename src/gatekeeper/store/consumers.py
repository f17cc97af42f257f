"""One stream-consumer reader for every consumer group gatekeeper runs (billing sink, alert log,
notifier, forwarder): read, reclaim, take over dead consumers, touch, ack, and keep alive.

Liveness. While `alive()` is entered, a heartbeat key per (group, consumer) (store/keys.py:
`consumer_heartbeat`, all in the `{live}` slot) is set to "1" for `Liveness.ttl_ms` every
`beat_interval_s`, and the consumer is listed in the group's registry (`consumer_registry`);
on leaving it (a graceful stop, once the consumer handled what it holds) the key becomes "0"
(stopped). `take_over()` — on start and every `check_interval_s` — finds the group's other
consumers (XINFO CONSUMERS, per stream) and counts one as dead when its heartbeat says stopped,
or is gone while the registry lists it (it beat within the last day, then fell silent: killed,
or paused for longer than `ttl_ms`). The dead one's pending entries are claimed at once
(XCLAIM, min-idle 0), and the consumer is removed from the group once it holds nothing
(consumer_release.lua). A consumer that never kept a heartbeat (an older gatekeeper during a
rolling upgrade) is never taken for dead. Entries of a live consumer are only ever taken by
`reclaim`, after the caller's `min_idle_ms`.

Every command names one stream, so all of this works per slot on a Redis Cluster; reads of
several streams go per slot through store/groups.py.

Entries: an entry whose `fields` are empty was deleted from the stream while pending (trimmed):
the caller acknowledges it (or dead-letters it). Redis 6.2 replies to XAUTOCLAIM with
`[cursor, entries]` (a deleted entry comes back as nil and stays pending) and >= 7 with
`[cursor, entries, deleted ids]` (deleted entries leave the PEL); both become empty entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from redis.typing import StreamIdT

from gatekeeper.loop import finish, wait_or_stop
from gatekeeper.store.groups import ensure_group, xreadgroup
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.scripts import load_script

__all__ = ["Entry", "GroupConsumer", "Liveness", "read_group"]

log = logging.getLogger(__name__)

_RELEASE = load_script("consumer_release", library=False)
_TOUCH = load_script("consumer_touch", library=False)
_ALIVE, _STOPPED = b"1", b"0"
_REGISTRY_KEEP_MS = 86_400_000  # a consumer silent this long leaves the registry
_NO_FIELDS: Mapping[bytes, bytes] = {}


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry delivered to this consumer; empty `fields` = deleted while pending."""

    stream: str
    id: str
    fields: Mapping[bytes, bytes]

    @property
    def ref(self) -> tuple[str, str]:
        return (self.stream, self.id)

    def text(self) -> dict[str, str]:
        """The fields decoded (UTF-8) to str."""
        return {_s(k): _s(v) for k, v in self.fields.items()}


@dataclass(frozen=True, slots=True)
class Liveness:
    """Heartbeat timing: a consumer silent for `ttl_ms` is dead (taken over at the next check).

    ttl_ms: how long a heartbeat lasts.
    beat_interval_s: how often a running consumer renews it (well under `ttl_ms`).
    check_interval_s: how often a consumer looks for dead ones (also once at start).
    """

    ttl_ms: int = 3000
    beat_interval_s: float = 1.0
    check_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.beat_interval_s <= 0 or self.check_interval_s <= 0:
            raise ValueError("liveness intervals must be > 0")
        if self.ttl_ms < 2 * self.beat_interval_s * 1000:
            raise ValueError("liveness ttl_ms must be at least twice beat_interval_s")


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(stream: str, rows: Any) -> list[Entry]:
    """Entries of one stream's rows; a 6.2 XAUTOCLAIM nil (deleted entry, no id) is skipped."""
    out = []
    for row in rows or ():
        if row is not None and row[0] is not None:
            out.append(Entry(stream, _s(row[0]), row[1] or _NO_FIELDS))
    return out


def _read_reply(reply: Any) -> list[Entry]:
    """XREADGROUP's `[stream, rows]` pairs as entries (RESP2 or RESP3 rows)."""
    out: list[Entry] = []
    for stream, rows in reply:
        if isinstance(rows, list) and rows and isinstance(rows[0], list):
            rows = rows[0]  # RESP3 shape
        out.extend(_entries(_s(stream), rows))
    return out


async def read_group(
    redis: Redis,
    group: str,
    consumer: str,
    streams: Sequence[str],
    *,
    count: int,
    block_ms: int | None,
    from_id: str = ">",
) -> list[Entry]:
    """XREADGROUP of new entries (`from_id` "0": the consumer's own pending ones instead): at
    most `count` per stream (so <= count x len(streams)). On a Cluster one per slot
    (store/groups.py: xreadgroup). Raises redis errors (NOGROUP when a group is missing)."""
    reply = await xreadgroup(
        redis, group, consumer, dict.fromkeys(streams, from_id), count=count, block_ms=block_ms
    )
    return _read_reply(reply)


class GroupConsumer:
    """`consumer` of `group` on `streams`. Every method raises redis errors unless it says
    otherwise; none retries."""

    def __init__(
        self,
        *,
        redis: Redis,
        keys: KeySpace,
        group: str,
        consumer: str,
        streams: Sequence[str],
        liveness: Liveness | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.group = group
        self.consumer = consumer
        self.streams = list(streams)
        self.liveness = liveness or Liveness()
        self._ready = False
        self._cursor: dict[str, str] = {}
        self._next_check = 0.0  # loop time of the next take-over check; 0 = at once
        self.taken_over = 0  # entries claimed from dead consumers
        self.released = 0  # dead consumers removed from the group (per stream)

    # -- groups and reads ------------------------------------------------------------------
    async def ensure_groups(self, *, force: bool = False) -> None:
        """Create the group on every stream (from id 0, MKSTREAM) once; BUSYGROUP is fine."""
        if self._ready and not force:
            return
        for stream in self.streams:
            await ensure_group(self._redis, stream, self.group)
        self._ready = True

    async def read(
        self,
        *,
        count: int,
        block_ms: int | None,
        streams: Sequence[str] | None = None,
        from_id: str = ">",
    ) -> list[Entry]:
        """XREADGROUP of `streams` (default all): `count` per stream; `block_ms` None = do not
        wait (0 would be "forever": at least 1 ms is passed)."""
        block = None if block_ms is None else max(1, block_ms)
        return await read_group(
            self._redis, self.group, self.consumer, self.streams if streams is None else streams,
            count=count, block_ms=block, from_id=from_id,
        )  # fmt: skip

    async def own_pending(self, count: int) -> list[Entry]:
        """Every entry pending at this consumer (paged by `count`, oldest first per stream):
        what this consumer name held when its last process stopped."""
        out: list[Entry] = []
        start: dict[str, str] = dict.fromkeys(self.streams, "0")
        while start:
            reply = await xreadgroup(self._redis, self.group, self.consumer, start, count=count)
            page = _read_reply(reply)
            out.extend(page)
            per_stream: dict[str, list[Entry]] = {}
            for entry in page:
                per_stream.setdefault(entry.stream, []).append(entry)
            # a full page may have more after it; a stream's next page starts past its last
            start = {s: got[-1].id for s, got in per_stream.items() if len(got) >= count}
        return out

    # -- reclaiming entries idle at any consumer ------------------------------------------------
    async def autoclaim(
        self, stream: str, *, min_idle_ms: int, start: str = "0-0", count: int = 100
    ) -> tuple[str, list[Entry]]:
        """One XAUTOCLAIM page of entries idle >= `min_idle_ms` (any consumer, dead or slow):
        (next cursor, "0-0" after a full scan; the entries, deleted ones with empty fields)."""
        reply = await self._redis.xautoclaim(
            stream, self.group, self.consumer, min_idle_ms, start, count=count
        )
        cursor = _s(reply[0])
        raw = reply[1] or []
        entries = _entries(stream, raw)
        if len(reply) >= 3:  # Redis >= 7: deleted ids, already dropped from the PEL
            entries.extend(Entry(stream, _s(i), _NO_FIELDS) for i in reply[2] or [])
        elif len(entries) < len(raw):  # 6.2: nils for deleted entries, left pending here
            entries.extend(await self._deleted_on_62(stream, start, cursor, entries))
        return cursor, entries

    async def _deleted_on_62(
        self, stream: str, start: str, cursor: str, entries: list[Entry]
    ) -> list[Entry]:
        end = "+" if cursor == "0-0" else f"({cursor}"  # exclusive range: Redis >= 6.2
        pel = await self._redis.xpending_range(
            stream, self.group, min=start, max=end, count=10_000, consumername=self.consumer
        )
        got = {e.id for e in entries}
        out = []
        for entry_id in (_s(p["message_id"]) for p in pel):
            if entry_id not in got and not await self._redis.xrange(
                stream, min=entry_id, max=entry_id, count=1
            ):
                out.append(Entry(stream, entry_id, _NO_FIELDS))
        return out

    async def reclaim(self, min_idle_ms: int, count: int) -> list[Entry]:
        """At most `count` entries idle >= `min_idle_ms`: one XAUTOCLAIM page per stream, each
        stream's cursor continuing next time (wrapping to the start after a full scan)."""
        out: list[Entry] = []
        for stream in self.streams:
            if len(out) >= count:
                break
            self._cursor[stream], got = await self.autoclaim(
                stream, min_idle_ms=min_idle_ms, start=self._cursor.get(stream, "0-0"),
                count=count - len(out),
            )  # fmt: skip
            out.extend(got)
        return out

    # -- liveness ----------------------------------------------------------------------------
    def _heartbeat(self, consumer: str) -> str:
        return self._keys.consumer_heartbeat(self.group, consumer)

    async def beat(self) -> None:
        """Mark this consumer alive for `ttl_ms` (and listed in the group's registry)."""
        now_ms = int(time.time() * 1000)  # wall clock: only ages registry members out
        registry = self._keys.consumer_registry(self.group)
        async with self._redis.pipeline(transaction=False) as pipe:  # one slot: one node
            pipe.set(self._heartbeat(self.consumer), _ALIVE, px=self.liveness.ttl_ms)
            pipe.zadd(registry, {self.consumer: now_ms})
            pipe.zremrangebyscore(registry, "-inf", now_ms - _REGISTRY_KEEP_MS)
            await pipe.execute()

    async def mark_stopped(self) -> None:
        """Mark this consumer stopped: others take over what it still holds at once."""
        await self._redis.set(self._heartbeat(self.consumer), _STOPPED, px=self.liveness.ttl_ms)

    @contextlib.asynccontextmanager
    async def alive(self) -> AsyncIterator[None]:
        """Keep the heartbeat while the body runs; mark stopped when it ends (however: a body
        that fails leaves its entries to the others too). Heartbeat failures (Redis down) are
        logged, never raised: at worst another consumer takes over and some work is done twice,
        which every consumer tolerates."""
        await self._beat_once()
        stop = asyncio.Event()
        task = asyncio.create_task(self._keep_beating(stop), name=f"heartbeat {self.group}")
        try:
            yield
        finally:
            # a stop ends it after the beat in flight; a cancellation only past 2 s, and it is
            # never awaited unbounded (a cancellation a Redis client swallows would hang here)
            stop.set()
            await finish(task, grace_s=2.0)
            try:
                async with asyncio.timeout(2.0):
                    await self.mark_stopped()
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("could not mark %s of %s stopped: %r", self.consumer, self.group, exc)

    async def _beat_once(self) -> None:
        try:
            await self.beat()
        except (RedisError, OSError) as exc:
            log.warning("heartbeat of %s in %s failed: %r", self.consumer, self.group, exc)

    async def _keep_beating(self, stop: asyncio.Event) -> None:
        while not await wait_or_stop(stop, self.liveness.beat_interval_s):
            await self._beat_once()

    def take_over_due(self) -> bool:
        """Whether `check_interval_s` passed since the last `take_over` (True at first)."""
        return asyncio.get_running_loop().time() >= self._next_check

    async def take_over(self, count: int) -> list[Entry]:
        """Claim (XCLAIM, min-idle 0) up to `count` entries pending at dead consumers of the
        group, and remove dead consumers that hold nothing from it. Entries of consumers that
        are alive, or never kept a heartbeat, are left alone."""
        self._next_check = asyncio.get_running_loop().time() + self.liveness.check_interval_s
        members: list[tuple[str, str, int]] = []  # stream, consumer, pending
        for stream in self.streams:
            try:
                rows = await self._redis.xinfo_consumers(stream, self.group)
            except ResponseError as exc:
                if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():
                    continue  # the stream (or group) is gone; the reads recreate it
                raise
            for row in rows:
                name = _s(row["name"])
                if name != self.consumer:
                    members.append((stream, name, int(row["pending"])))
        if not members:
            return []
        names = sorted({m[1] for m in members})
        beats = await self._redis.mget([self._heartbeat(n) for n in names])
        listed = await self._redis.zmscore(self._keys.consumer_registry(self.group), names)
        dead = {
            name
            for name, beat, score in zip(names, beats, listed, strict=True)
            if beat == _STOPPED or (beat is None and score is not None)
        }
        out: list[Entry] = []
        for stream, name, pending in members:
            if name not in dead:
                continue
            if pending and len(out) < count:
                out.extend(await self._claim_from(stream, name, count - len(out)))
            if await _RELEASE.run(self._redis, [stream], [self.group, name]):
                self.released += 1
                log.info("removed dead consumer %s from %s on %s", name, self.group, stream)
        self.taken_over += len(out)
        return out

    async def _claim_from(self, stream: str, dead: str, count: int) -> list[Entry]:
        rows = await self._redis.xpending_range(
            stream, self.group, min="-", max="+", count=count, consumername=dead
        )
        ids = [_s(r["message_id"]) for r in rows]
        if not ids:
            return []
        claim: list[StreamIdT] = list(ids)
        reply = await self._redis.xclaim(stream, self.group, self.consumer, 0, claim)
        got = _entries(stream, reply)
        have = {e.id for e in got}
        # deleted from the stream while pending: dropped from the PEL (>= 7) or now ours (6.2)
        got.extend(Entry(stream, i, _NO_FIELDS) for i in ids if i not in have)
        log.warning(
            "took over %d entries of dead consumer %s in %s on %s", len(got), dead, self.group,
            stream,
        )  # fmt: skip
        return got

    # -- holding and finishing -------------------------------------------------------------
    async def touch(self, refs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Reset the idle time of the entries in `refs` this consumer still holds (so nobody
        reclaims them as idle); returns the refs it no longer holds (consumer_touch.lua)."""
        lost: list[tuple[str, str]] = []
        for stream, ids in _by_stream(refs).items():
            gone = await _TOUCH.run(self._redis, [stream], [self.group, self.consumer, *ids])
            lost.extend((stream, _s(i)) for i in gone or ())
        return lost

    async def ack(self, refs: Sequence[tuple[str, str]]) -> int:
        """XACK `refs` (one pipeline). Returns how many were still pending."""
        by_stream = _by_stream(refs)
        if not by_stream:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            counts = await pipe.execute()
        return sum(int(c) for c in counts)


def _by_stream(refs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    by_stream: dict[str, list[str]] = {}
    for stream, entry_id in refs:
        by_stream.setdefault(stream, []).append(entry_id)
    return by_stream
