"""The rate limit service of one `gatekeeper serve` process, and the watcher of its config."""

from __future__ import annotations

import os

from redis.asyncio import Redis

from gatekeeper.clock import Clock
from gatekeeper.ratelimit.config import load_ratelimit_config
from gatekeeper.ratelimit.reload import ConfigWatcher, fingerprint
from gatekeeper.ratelimit.service import RateLimitService
from gatekeeper.ratelimit.stats import DEFAULT_MAX_SERIES, StatsTable
from gatekeeper.ratelimit.store import RedisCounterStore
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.redis_store import ScriptTracer

__all__ = ["open_ratelimit"]


def open_ratelimit(
    path: str | os.PathLike[str],
    *,
    redis: Redis,
    keys: KeySpace,
    clock: Clock,
    max_series: int = DEFAULT_MAX_SERIES,
    tracer: ScriptTracer | None = None,
    cluster: bool = False,
) -> tuple[RateLimitService, ConfigWatcher]:
    """Load the config at `path` (blocking: called once at start) into a service counting in
    `redis`, with a watcher (not started) that reloads it while serving. `tracer`: tracing
    on — each script call is a child span of the ShouldRateLimit span. `cluster`: `redis` is a
    Redis Cluster (settings.redis.cluster): a request's counters go in one call per hash slot.

    Raises ConfigError (every issue, with file and line) for a config that does not load.
    """
    seen = fingerprint(path)  # before loading: a change made meanwhile is seen by the watcher
    service = RateLimitService(
        load_ratelimit_config(path),
        RedisCounterStore(redis=redis, keys=keys, cluster=cluster, tracer=tracer),
        clock,
        stats=StatsTable(max_series=max_series),
    )
    return service, ConfigWatcher(path=path, service=service, clock=clock, seen=seen)
