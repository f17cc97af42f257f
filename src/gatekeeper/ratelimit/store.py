"""Fixed-window counters in Redis for the envoyproxy/ratelimit-compatible service.

Upstream (`src/limiter/cache_key.go`, `src/redis/fixed_cache_impl.go`) keys a counter by
domain, the request's descriptor entries and the window start, INCRBYs it and sets its expiry
to the window length. Here the key comes from `KeySpace.ratelimit`; its hash tag is the
descriptor, so different descriptors spread over a Cluster. One `ratelimit.lua` call per hash
slot adds the hits (TTL on the first increment only): with `cluster=False` (a single Redis or
Valkey) every counter of a request goes in one call; with `cluster=True` the counters are
grouped by slot and the groups run concurrently, each atomic on its own. Upstream counts every
descriptor independently anyway (it never undoes one because another is over), so splitting a
request by slot changes no answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from urllib.parse import quote

from redis.asyncio import Redis
from redis.crc import key_slot

from gatekeeper.ratelimit.service import Counter
from gatekeeper.store.argpack import array_header, pack_values
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.redis_store import ScriptTracer
from gatekeeper.store.scripts import LuaScript, load_script

__all__ = ["RedisCounterStore", "descriptor_key"]


def descriptor_key(entries: Sequence[tuple[str, str]]) -> str:
    """A stable, escaped join of descriptor entries: `k1=v1&k2=v2`, each part percent-escaped.

    Escaping keeps `{`/`}` out of the hash tag and makes the join unambiguous (`a=b&c` cannot
    come from two different entry lists).
    """
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in entries)


class RedisCounterStore:
    """`CounterStore` on Redis (>= 6.2) or Valkey. Errors are redis-py's, raised as they come."""

    def __init__(
        self,
        *,
        redis: Redis,
        keys: KeySpace,
        cluster: bool = False,
        tracer: ScriptTracer | None = None,
    ) -> None:
        """`tracer`: tracing on — each script call is a child span of the ShouldRateLimit span."""
        self._redis = redis
        self._tracer = tracer
        self._keys = keys
        self._cluster = cluster
        self._script: LuaScript = load_script("ratelimit")

    def key(self, counter: Counter) -> str:
        """The Redis key of a counter (for inspection and tests)."""
        return self._keys.ratelimit(
            counter.domain, descriptor_key(counter.entries), counter.window_start
        )

    async def hit(self, counters: Sequence[Counter]) -> list[int]:
        """Add each counter's hits and return the counts after, in order (see module doc)."""
        keys = [self.key(c) for c in counters]
        if not self._cluster:
            return await self._run(keys, counters)
        groups: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(key_slot(key.encode()), []).append(index)
        results = await asyncio.gather(
            *(
                self._run([keys[i] for i in members], [counters[i] for i in members])
                for members in groups.values()
            )
        )
        counts = [0] * len(counters)
        for members, values in zip(groups.values(), results, strict=True):
            for index, value in zip(members, values, strict=True):
                counts[index] = value
        return counts

    async def _run(self, keys: list[str], counters: Sequence[Counter]) -> list[int]:
        packed = array_header(2 * len(counters)) + pack_values(
            v for c in counters for v in (c.hits, c.window_seconds)
        )
        span = self._tracer.redis(self._script.name) if self._tracer is not None else None
        try:
            reply = await self._script.run(self._redis, keys, [packed])
        except BaseException as exc:
            if span is not None:
                span.end(exc)
            raise
        if span is not None:
            span.end()
        return [int(value) for value in reply]
