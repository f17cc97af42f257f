"""Where a usage stream may be trimmed: below the oldest entry some consumer group still needs.

Reading, reclaiming and taking over entries is store/consumers.py (one reader for every group).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = ["next_id", "trim_bound"]


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def next_id(entry_id: str) -> str:
    """The smallest id after `entry_id` (ids are ms-seq)."""
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"


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
