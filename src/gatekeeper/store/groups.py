"""Consumer groups on the partition streams (billing sink, forwarder, notifier share this)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = ["ensure_group"]


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
