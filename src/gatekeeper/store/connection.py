"""The Redis the process talks to: GATEKEEPER_REDIS_URL, else an embedded one it owns."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis

from gatekeeper.settings import RedisSettings
from gatekeeper.store.embedded import EmbeddedRedis

__all__ = ["RedisHandle", "open_redis"]

log = logging.getLogger(__name__)

MIN_VERSION = (6, 2)


@dataclass
class RedisHandle:
    client: Redis
    url: str
    embedded: EmbeddedRedis | None

    async def close(self) -> None:
        await self.client.aclose()
        if self.embedded is not None:
            await self.embedded.astop()


async def open_redis(settings: RedisSettings) -> RedisHandle:
    """Connect to `settings.url`, or start an embedded Redis when it is unset.

    Raises RuntimeError when the server is older than Redis 6.2 (or Valkey's equivalent).
    """
    embedded = None
    if settings.url is None:
        embedded = await EmbeddedRedis().astart()
        url = embedded.url
    else:
        url = settings.url.value
    # A bounded pool that waits for a free connection instead of failing under bursts.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=settings.max_connections, timeout=settings.pool_timeout_s
    )
    client = Redis(connection_pool=pool)
    try:
        info = await client.info("server")
        version = tuple(int(p) for p in str(info.get("redis_version", "0.0")).split(".")[:2])
        if version < MIN_VERSION:
            raise RuntimeError(f"Redis {info.get('redis_version')} is too old: need 6.2 or newer")
    except BaseException:
        await client.aclose()
        if embedded is not None:
            await embedded.astop()
        raise
    return RedisHandle(
        client=client, url=url if embedded else "(GATEKEEPER_REDIS_URL)", embedded=embedded
    )
