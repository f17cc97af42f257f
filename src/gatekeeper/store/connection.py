"""The Redis the process talks to: GATEKEEPER_REDIS_URL, else the data directory's embedded one.

`open_configured_redis(settings)` is what commands call: the URL when set, else the shared,
durable Redis of `settings.data_dir` (store/datadir.py). `open_redis(settings.redis)` without a
URL starts a private, throwaway embedded Redis (tests).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import parse_url

from gatekeeper.settings import RedisSettings, Settings
from gatekeeper.store.autopipeline import AutoPipeline, Pipelined
from gatekeeper.store.cluster import ClusterAutoPipeline, parse_seeds
from gatekeeper.store.clusterclient import GatekeeperRedisCluster
from gatekeeper.store.datadir import DataDir, SharedRedis, open_shared_redis
from gatekeeper.store.embedded import EmbeddedRedis
from gatekeeper.store.endpoint import Endpoint

__all__ = [
    "GatekeeperRedis",
    "GatekeeperRedisCluster",
    "RedisHandle",
    "autopipeline_of",
    "connect_redis",
    "open_configured_redis",
    "open_redis",
]

log = logging.getLogger(__name__)

MIN_VERSION = (6, 2)
AUTOPIPELINE_CONNECTIONS = 2  # measured best on 2 cores (1: -15 %, 4: -30 %)


class GatekeeperRedis(Redis):
    """A redis-py client that also owns the auto-pipeline of the hot Lua calls, if any.

    RedisDecisionStore sends decisions through `autopipeline` when it is set; everything else
    (streams, admin, pub/sub) goes through redis-py. `aclose()` closes both.
    """

    autopipeline: AutoPipeline | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self.autopipeline is not None:
            await self.autopipeline.aclose()
        await super().aclose(close_connection_pool)


def autopipeline_of(client: object) -> Pipelined | None:
    """The auto-pipeline a client from connect_redis() owns, if any."""
    if isinstance(client, GatekeeperRedis | GatekeeperRedisCluster):
        return client.autopipeline
    return None


def connect_redis(url: str, settings: RedisSettings) -> GatekeeperRedis:
    """A client for `url` (no I/O yet): a bounded redis-py pool, plus the auto-pipeline when
    `settings.autopipeline` is on (over TLS too for rediss://, with redis-py's context).

    With `settings.cluster`, `url` lists seed nodes and the client is a GatekeeperRedisCluster
    (typed as the single-node client: it answers the same command methods; pipelines,
    transactions and pub/sub differ, see docs/scaling.md). Raises ValueError for a bad seed.
    """
    if settings.cluster:
        return cast(GatekeeperRedis, connect_cluster(url, settings))
    # A bounded pool that waits for a free connection instead of failing under bursts.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=settings.max_connections, timeout=settings.pool_timeout_s
    )
    client = GatekeeperRedis(connection_pool=pool)
    if settings.autopipeline:
        endpoint = Endpoint.from_pool(pool)
        if endpoint is None:
            log.info("this Redis URL's connection cannot be auto-pipelined: redis-py only")
        else:
            client.autopipeline = AutoPipeline(endpoint, connections=AUTOPIPELINE_CONNECTIONS)
    return client


def connect_cluster(url: str, settings: RedisSettings) -> GatekeeperRedisCluster:
    """A Cluster client from comma-separated seeds (no I/O yet), with the cluster-aware
    auto-pipeline when `settings.autopipeline` is on. Like the single-node pool it waits
    up to `pool_timeout_s` for one of `max_connections` (store/clusterclient.py)."""
    seeds = parse_seeds(url)
    first = seeds[0]
    client = GatekeeperRedisCluster(
        startup_nodes=[ClusterNode(s.host, s.port) for s in seeds],
        username=first.username,
        password=first.password,
        socket_timeout=first.timeout_s,
        socket_connect_timeout=first.connect_timeout_s,
        max_connections=settings.max_connections,
        pool_timeout_s=settings.pool_timeout_s,
        **_tls_options(url.split(",", 1)[0].strip()),
    )
    if settings.autopipeline:
        client.autopipeline = ClusterAutoPipeline(seeds)
    return client


_TLS_OPTIONS = (
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "ssl_min_version",
    "ssl_ciphers",
)


def _tls_options(first_seed: str) -> dict[str, Any]:
    """redis-py's Cluster client options for the first seed's rediss:// query (the CA, client
    certificate and key ... read as redis-py reads them for one server); {} for redis://."""
    if not first_seed.startswith("rediss://"):
        return {}
    options = parse_url(first_seed)
    return {"ssl": True, **{k: v for k, v in options.items() if k in _TLS_OPTIONS}}


@dataclass
class RedisHandle:
    client: Redis
    url: str
    embedded: EmbeddedRedis | None
    shared: SharedRedis | None = None  # the data directory's Redis, released at close()

    async def close(self) -> None:
        await self.client.aclose()
        if self.embedded is not None:
            await self.embedded.astop()
        if self.shared is not None:
            await self.shared.aclose()


async def open_configured_redis(settings: Settings, *, create: bool = True) -> RedisHandle:
    """The Redis `settings` name: GATEKEEPER_REDIS_URL, else the embedded Redis of
    `settings.data_dir`, shared with every other command on that directory.

    `create=False` (commands that only read): raise DataDirMissing naming the append-only
    file when the directory holds no Redis data, instead of starting an empty one.
    Raises DataDirError (the embedded one cannot start), RuntimeError (Redis too old),
    redis errors (the URL does not answer).
    """
    if settings.redis.url is not None:
        return await open_redis(settings.redis)
    data = DataDir.at(settings.data_dir)
    shared = await asyncio.to_thread(open_shared_redis, data, create=create)
    try:
        client = await _checked(connect_redis(shared.url, settings.redis))
    except BaseException:
        await shared.aclose()
        raise
    return RedisHandle(client=client, url=shared.url, embedded=None, shared=shared)


async def _checked(client: GatekeeperRedis) -> GatekeeperRedis:
    """`client` once its server answered as Redis 6.2 or newer; closed and raised otherwise."""
    try:
        info = await client.info("server")
        version = tuple(int(p) for p in str(info.get("redis_version", "0.0")).split(".")[:2])
        if version < MIN_VERSION:
            raise RuntimeError(f"Redis {info.get('redis_version')} is too old: need 6.2 or newer")
    except BaseException:
        await client.aclose()
        raise
    return client


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
    try:
        client = await _checked(connect_redis(url, settings))
    except BaseException:
        if embedded is not None:
            await embedded.astop()
        raise
    return RedisHandle(
        client=client, url=url if embedded else "(GATEKEEPER_REDIS_URL)", embedded=embedded
    )
