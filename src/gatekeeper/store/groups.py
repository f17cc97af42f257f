"""Consumer groups on the partition streams (billing sink, forwarder, notifier share this).

On a Redis Cluster (a RedisCluster client) `xreadgroup` reads the streams of each hash slot
with its own XREADGROUP: one command never names streams of two slots (CROSSSLOT).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError
from redis.typing import KeyT, StreamIdT

__all__ = ["ensure_group", "xreadgroup"]


async def ensure_group(redis: Redis, stream: str, group: str) -> bool:
    """Create `group` on `stream` from the first entry (MKSTREAM); False when it exists.

    Raises any other redis error.
    """
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


async def xreadgroup(
    redis: Redis,
    group: str,
    consumer: str,
    streams: Mapping[str, str],
    *,
    count: int | None,
    block_ms: int | None = None,
) -> list[Any]:
    """XREADGROUP of `streams` ({stream: from id}); the reply as `[stream, entries]` pairs.

    On a Cluster, one XREADGROUP per slot, all at once: first without blocking; only when
    none returned anything (and `block_ms` is set), all again with `block_ms`. So a read
    still waits at most `block_ms`, but once idle, entries of one slot may wait for the other
    slots' reads to time out. No read is ever cancelled: a cancelled XREADGROUP may already
    have delivered entries (they would stay pending until reclaimed). Raises redis errors.
    """
    if isinstance(redis, RedisCluster) and len(streams) > 1:
        by_slot: dict[int, dict[str, str]] = {}
        for stream, from_id in streams.items():
            by_slot.setdefault(key_slot(stream.encode()), {})[stream] = from_id
        if len(by_slot) > 1:
            parts = list(by_slot.values())
            pairs = await _each(redis, group, consumer, parts, count, None)
            if pairs or block_ms is None:
                return pairs
            return await _each(redis, group, consumer, parts, count, block_ms)
    reply = await redis.xreadgroup(group, consumer, _ids(streams), count=count, block=block_ms)
    return _pairs(reply)


async def _each(
    redis: Redis,
    group: str,
    consumer: str,
    parts: list[dict[str, str]],
    count: int | None,
    block_ms: int | None,
) -> list[Any]:
    replies = await asyncio.gather(
        *(redis.xreadgroup(group, consumer, _ids(p), count=count, block=block_ms) for p in parts)
    )
    return [pair for reply in replies for pair in _pairs(reply)]


def _ids(streams: Mapping[str, str]) -> dict[KeyT, StreamIdT]:
    return {stream: from_id for stream, from_id in streams.items()}


def _pairs(reply: Any) -> list[Any]:
    """XREADGROUP's reply in the RESP2 shape: [[stream, entries], ...] (RESP3 gives a map)."""
    if isinstance(reply, dict):
        return [[stream, entries] for stream, entries in reply.items()]
    return list(reply or [])
