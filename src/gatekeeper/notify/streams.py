"""Consumer-group plumbing of the notifier over the partition alert streams.

Same ideas as `gatekeeper.forward.consumer`: a group created from id 0 (nothing is skipped),
own pending entries re-read after a restart, XAUTOCLAIM for entries of dead consumers (Redis
6.2 replies [next, entries]; >= 7 adds deleted ids), and entries deleted from the stream while
pending (empty fields, or a None id on 6.2) acked as gone. Unlike the forwarder, the notifier
holds entries pending for a long time (digest windows, retries), so it keeps their idle time
fresh (XCLAIM ... JUSTID to itself) lest another consumer reclaim them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.typing import StreamIdT

from gatekeeper.store.groups import ensure_group, xreadgroup

__all__ = ["GROUP", "GroupReader", "StreamEntry"]

GROUP = "gatekeeper-notifier"


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One stream entry; empty `fields` = deleted from the stream while pending."""

    stream: str
    entry_id: str
    fields: dict[str, str]

    @property
    def ref(self) -> tuple[str, str]:
        return (self.stream, self.entry_id)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(reply: Any) -> list[StreamEntry]:
    out = []
    for stream_name, rows in reply or ():
        stream = _s(stream_name)
        for entry_id, fields in rows or ():
            if entry_id is None:  # 6.2 XAUTOCLAIM of a deleted entry: nothing to ack
                continue
            data = {_s(k): _s(v) for k, v in (fields or {}).items()}
            out.append(StreamEntry(stream, _s(entry_id), data))
    return out


class GroupReader:
    """Reads `streams` as `consumer` in group GROUP. Every method raises redis errors."""

    def __init__(self, *, redis: Redis, streams: Sequence[str], consumer: str) -> None:
        self._redis = redis
        self._streams = list(streams)
        self._consumer = consumer
        self._ready = False
        self._cursor: dict[str, str] = {}

    async def ensure_groups(self) -> None:
        """Create the group on every stream (from id 0, MKSTREAM) once; BUSYGROUP is fine."""
        if self._ready:
            return
        for stream in self._streams:
            await ensure_group(self._redis, stream, GROUP)
        self._ready = True

    async def own_pending(self, count: int) -> list[StreamEntry]:
        """Every entry pending at this consumer (paged, oldest first per stream)."""
        out: list[StreamEntry] = []
        start: dict[str, str] = dict.fromkeys(self._streams, "0")
        while start:
            reply = await xreadgroup(self._redis, GROUP, self._consumer, start, count=count)
            page = _entries(reply)
            out.extend(page)
            last: dict[str, str] = {}
            for entry in page:
                last[entry.stream] = entry.entry_id
            start = {s: i for s, i in last.items() if s in start}
        return out

    async def read_new(self, count: int, block_ms: int | None) -> list[StreamEntry]:
        """New entries; waits up to `block_ms` (>= 1) for one, or not at all when None."""
        streams = dict.fromkeys(self._streams, ">")
        block = None if block_ms is None else max(1, block_ms)
        reply = await xreadgroup(
            self._redis, GROUP, self._consumer, streams, count=count, block_ms=block
        )
        return _entries(reply)

    async def reclaim(self, min_idle_ms: int, count: int) -> list[StreamEntry]:
        """Take over entries idle at any consumer for `min_idle_ms` (one XAUTOCLAIM page per
        stream; the cursor continues next time and wraps to 0-0 after a full scan)."""
        out: list[StreamEntry] = []
        for stream in self._streams:
            reply = await self._redis.xautoclaim(
                stream,
                GROUP,
                self._consumer,
                min_idle_time=min_idle_ms,
                start_id=self._cursor.get(stream, "0-0"),
                count=count,
            )
            self._cursor[stream] = _s(reply[0])
            # 6.2: [next, entries]; >= 7.0: [next, entries, deleted ids] (Redis already
            # dropped those from the PEL): only the entries matter.
            claimed = reply[1] if len(reply) >= 2 else []
            out.extend(_entries([[stream, claimed]]))
        return out

    async def touch(self, refs: Sequence[tuple[str, str]]) -> None:
        """Reset the idle time of entries this consumer holds (XCLAIM JUSTID, min idle 0)."""
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in refs:
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            claim: list[StreamIdT] = list(ids)
            await self._redis.xclaim(stream, GROUP, self._consumer, 0, claim, justid=True)

    async def ack(self, refs: Sequence[tuple[str, str]]) -> int:
        """XACK `refs` (one pipeline). Returns how many were still pending."""
        if not refs:
            return 0
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in refs:
            by_stream.setdefault(stream, []).append(entry_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, GROUP, *ids)
            counts = await pipe.execute()
        return sum(int(c) for c in counts)
