"""redis-py's Cluster client, bounded: past `max_connections` a call waits, it does not fail.

redis-py's cluster client keeps a pool per node (`ClusterNode`) that raises
`MaxConnectionsError` as soon as `max_connections` connections of that node are in use: it
never waits, so a burst of admin calls, directory misses or settlements fails where the
single-node `BlockingConnectionPool` waits up to `pool_timeout_s`. Its node class cannot be
swapped (NodesManager builds `ClusterNode` by name) and taking a connection is synchronous,
so the bound sits one level up: `max_connections` permits per client.

- Every command and every pipeline execution holds one permit while it runs. Each uses at
  most one connection of any node at a time (a command sent to several nodes, or a pipeline
  spread over several, takes one connection of each), so the permit holders never have more
  than `max_connections` connections of one node in use.
- A caller finding no permit waits up to `pool_timeout_s`, then gets redis's
  `ConnectionError("No connection available.")`, what BlockingConnectionPool raises.
- A task that holds a permit and calls the client again (a pipeline's redirected commands,
  a refresh of the slot map) uses its own permit: it has no other connection in use then.
- A transaction's WATCH keeps its connection until the pipeline resets: it holds a permit
  that long (`directory.change` does its reads through the pipeline meanwhile).
- Pub/sub subscriptions hold a node connection for their lifetime outside the permits; each
  node's pool has SUBSCRIPTION_RESERVE connections more than the permits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from gatekeeper.store.cluster import ClusterAutoPipeline

__all__ = ["SUBSCRIPTION_RESERVE", "ClusterPermits", "GatekeeperRedisCluster"]

# connections per node beyond the permits: pub/sub subscriptions (the directory's invalidation
# listener: one per process) and slot-map reads started outside any command
SUBSCRIPTION_RESERVE = 4


class ClusterPermits:
    """`limit` permits; a task holding one is not asked for a second (see the module doc)."""

    def __init__(self, limit: int, timeout_s: float) -> None:
        if limit < 1:
            raise ValueError("max_connections must be >= 1")
        self.limit = limit
        self._timeout_s = timeout_s
        self._free = asyncio.Semaphore(limit)
        self._holders: set[asyncio.Task[Any]] = set()
        self.waited = 0  # acquisitions that had to wait (tests, metrics)

    async def acquire(self) -> None:
        """Take a permit, waiting up to the pool timeout; raises redis ConnectionError."""
        if not self._free.locked():
            await self._free.acquire()  # free: returns without suspending
            return
        self.waited += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._free.acquire()
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None

    def release(self) -> None:
        self._free.release()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """A permit for the current task for the block (none taken if it holds one)."""
        task = asyncio.current_task()
        if task is not None and task in self._holders:
            yield
            return
        await self.acquire()
        if task is not None:
            self._holders.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._holders.discard(task)
            self.release()


class GatekeeperRedisCluster(RedisCluster):
    """redis-py's Cluster client (MOVED/ASK, slot map) for everything but the decisions'
    Lua calls, which go through `autopipeline` (store/cluster.py), one per primary.

    At most `max_connections` commands and pipelines run at once; the others wait up to
    `pool_timeout_s` (module doc).
    """

    autopipeline: ClusterAutoPipeline | None = None

    def __init__(self, *, max_connections: int, pool_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections + SUBSCRIPTION_RESERVE, **kwargs)
        self.permits = ClusterPermits(max_connections, pool_timeout_s)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.permits.held():
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return BoundedClusterPipeline(self, transaction)  # type: ignore[abstract]

    async def aclose(self) -> None:
        if self.autopipeline is not None:
            await self.autopipeline.aclose()
        await super().aclose()


class BoundedClusterPipeline(ClusterPipeline):
    """A ClusterPipeline whose execution (or WATCH .. reset) holds one of its client's permits."""

    __slots__ = ("_permits", "_watch_permit")

    def __init__(self, client: GatekeeperRedisCluster, transaction: Any | None = None) -> None:
        super().__init__(client, transaction)
        self._permits = client.permits
        self._watch_permit = False

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        if self._watch_permit:  # WATCH took it; reset() (run by execute) gives it back
            return await super().execute(raise_on_error, allow_redirections)
        async with self._permits.held():
            return await super().execute(raise_on_error, allow_redirections)

    async def watch(self, *names: Any) -> None:  # type: ignore[override]
        if not self._watch_permit:
            await self._permits.acquire()
            self._watch_permit = True
        await super().watch(*names)  # type: ignore[no-untyped-call]

    async def reset(self) -> None:  # type: ignore[override]
        try:
            await super().reset()  # type: ignore[no-untyped-call]
        finally:
            if self._watch_permit:
                self._watch_permit = False
                self._permits.release()
