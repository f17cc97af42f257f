"""Redis adapters: key layout, Lua scripts, the decision store, embedded Redis."""

from gatekeeper.store.connection import RedisHandle, open_configured_redis, open_redis
from gatekeeper.store.datadir import DataDir, DataDirError, DataDirMissing
from gatekeeper.store.embedded import EmbeddedRedis
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.redis_store import RedisDecisionStore

__all__ = [
    "DataDir",
    "DataDirError",
    "DataDirMissing",
    "EmbeddedRedis",
    "KeySpace",
    "RedisDecisionStore",
    "RedisHandle",
    "open_configured_redis",
    "open_redis",
]
