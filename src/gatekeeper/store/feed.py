"""Follow a customer's usage events as they are appended (for WatchUsage and the dashboard)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from gatekeeper.events import UsageEvent
from gatekeeper.store.keys import KeySpace

__all__ = ["UsageFeed"]


class UsageFeed:
    def __init__(self, *, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys

    async def follow(
        self, customer: str, *, after: str = "$", block_ms: int = 1_000
    ) -> AsyncIterator[UsageEvent]:
        """Events of `customer` appended after `after` (a stream id; "$" = from now), forever.

        Reads the customer's partition stream with XREAD BLOCK (no consumer group: watching
        never acknowledges anything). Raises redis errors to the caller.
        """
        stream = self._keys.usage_stream(self._keys.partition(customer))
        last = after
        while True:
            reply: Any = await self._redis.xread({stream: last}, count=200, block=block_ms)
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    event = UsageEvent.from_fields(fields)
                    if event.customer == customer:
                        yield event
