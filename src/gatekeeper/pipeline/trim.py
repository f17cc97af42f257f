"""Trim the usage streams, never past an entry some consumer group still needs.

Rule: XTRIM <stream> MINID <bound>, bound = the smallest, over EVERY consumer group of the
stream (billing, notifier, forwarders, ...), of its oldest pending entry, or the first entry
after its last-delivered id when it has none pending. Entries that are pending or undelivered
for any group are therefore kept; a stream without groups is not trimmed at all. Exact (`=`)
trimming, so what is removed is exactly what every group has acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis.asyncio import Redis

from gatekeeper.pipeline.streams import trim_bound

__all__ = ["StreamTrimmer"]

log = logging.getLogger(__name__)


class StreamTrimmer:
    def __init__(self, *, redis: Redis, streams: Sequence[str]) -> None:
        self._redis = redis
        self._streams = list(streams)

    async def run_once(self) -> int:
        """Trim every stream once; returns the number of entries removed. Raises redis errors."""
        removed = 0
        for stream in self._streams:
            bound = await trim_bound(self._redis, stream)
            if bound is None:
                continue
            n = int(await self._redis.xtrim(stream, minid=bound, approximate=False))
            if n:
                log.debug("trimmed %d entries of %s below %s", n, stream, bound)
            removed += n
        return removed
