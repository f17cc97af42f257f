"""Consumer-group plumbing over the partition streams: create, read, reclaim, find trim bounds.

On a Redis Cluster `read_group` reads the streams of each hash slot with its own XREADGROUP
(store/groups.py).

Works on Redis 6.2 and >= 7: XAUTOCLAIM replies `[cursor, entries]` on 6.2 (an entry deleted
while pending comes back as nil and stays in the PEL) and `[cursor, entries, deleted_ids]` on 7
(deleted entries leave the PEL); `autoclaim` returns the deleted ids in both cases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gatekeeper.store.groups import ensure_group, xreadgroup

__all__ = ["Claimed", "Entry", "autoclaim", "ensure_group", "next_id", "read_group", "trim_bound"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry delivered to this consumer."""

    stream: str
    id: str
    fields: Mapping[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Claimed:
    cursor: str  # "0-0" = the whole PEL was scanned
    entries: list[Entry]
    deleted: list[str]  # ids that were pending but no longer exist in the stream


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def next_id(entry_id: str) -> str:
    """The smallest id after `entry_id` (ids are ms-seq)."""
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"


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
    (store/groups.py: xreadgroup)."""
    reply = await xreadgroup(
        redis, group, consumer, dict.fromkeys(streams, from_id), count=count, block_ms=block_ms
    )
    out: list[Entry] = []
    for stream, entries in reply:
        name = _s(stream)
        if isinstance(entries, list) and entries and isinstance(entries[0], list):
            entries = entries[0]  # RESP3 shape
        for entry_id, fields in entries:
            if fields:  # a pending entry deleted from the stream meanwhile has none
                out.append(Entry(name, _s(entry_id), fields))
    return out


async def autoclaim(
    redis: Redis,
    stream: str,
    group: str,
    consumer: str,
    *,
    min_idle_ms: int,
    start: str = "0-0",
    count: int = 100,
) -> Claimed:
    """XAUTOCLAIM entries idle for >= min_idle_ms (of any consumer, dead or slow) to `consumer`.

    Both reply shapes are handled; on 6.2 a deleted entry is found by comparing the PEL with
    the entries returned, then confirmed missing with XRANGE.
    """
    reply = await redis.xautoclaim(stream, group, consumer, min_idle_ms, start, count=count)
    cursor = _s(reply[0])
    raw = reply[1] or []
    entries = [Entry(stream, _s(i), f) for i, f in raw if i is not None and f is not None]
    if len(reply) >= 3:
        deleted = [_s(i) for i in reply[2] or []]
    elif len(entries) < len(raw):
        deleted = await _deleted_on_62(redis, stream, group, consumer, start, cursor, entries)
    else:
        deleted = []
    return Claimed(cursor, entries, deleted)


async def _deleted_on_62(
    redis: Redis,
    stream: str,
    group: str,
    consumer: str,
    start: str,
    cursor: str,
    entries: list[Entry],
) -> list[str]:
    end = "+" if cursor == "0-0" else f"({cursor}"  # exclusive range: Redis >= 6.2
    pel = await redis.xpending_range(
        stream, group, min=start, max=end, count=10_000, consumername=consumer
    )
    got = {e.id for e in entries}
    candidates = [_s(p["message_id"]) for p in pel if _s(p["message_id"]) not in got]
    deleted = []
    for entry_id in candidates:
        if not await redis.xrange(stream, min=entry_id, max=entry_id, count=1):
            deleted.append(entry_id)
    return deleted


async def trim_bound(redis: Redis, stream: str) -> str | None:
    """The smallest id some consumer group still needs; None = do not trim.

    Per group: its oldest pending entry, else the first entry after its last-delivered id.
    A stream without groups (or without the stream) is never trimmed: a group may be added.
    Groups only move forward, so a bound computed from a slightly stale view is conservative.
    """
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise
    if not groups:
        return None
    bounds: list[str] = []
    for g in groups:
        after_delivered = next_id(_s(g["last-delivered-id"]))
        if int(g["pending"]) > 0:
            summary = await redis.xpending(stream, _s(g["name"]))
            oldest = summary.get("min")
            bounds.append(_s(oldest) if oldest is not None else after_delivered)
        else:
            bounds.append(after_delivered)
    return min(bounds, key=_id_key)
