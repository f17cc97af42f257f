"""gatekeeper composed in the bench's own process, exactly as `gatekeeper serve` composes it.

The engine and scale scenarios call `App.engine` directly (no transport); the correctness
checks read counters through a second App's engine (`usage()`, which consumes nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.config import LoadedConfig
from gatekeeper.config.loader import parse_config
from gatekeeper.engine import DecisionEngine
from gatekeeper.model import Policy

__all__ = ["bench_env", "delete_prefix", "running_app"]


def bench_env(
    redis_url: str, prefix: str, ratelimit_config: str | None = None, *, cluster: bool = False
) -> dict[str, str]:
    """GATEKEEPER_* settings of every gatekeeper the bench runs (its Redis, its key prefix);
    with `cluster`, `redis_url` lists the seeds of a Redis Cluster."""
    env = {"GATEKEEPER_REDIS_URL": redis_url, "GATEKEEPER_REDIS_KEY_PREFIX": prefix}
    if ratelimit_config is not None:
        env["GATEKEEPER_RATELIMIT_CONFIG"] = ratelimit_config
    if cluster:
        env["GATEKEEPER_REDIS_CLUSTER"] = "true"
    return env


def load(
    policy_text: str,
    redis_url: str,
    prefix: str,
    policy: Policy | None = None,
    *,
    cluster: bool = False,
) -> LoadedConfig:
    env = bench_env(redis_url, prefix, cluster=cluster)
    loaded = parse_config(policy_text, source="<bench>", env=env)
    return loaded if policy is None else replace(loaded, policy=policy)


@contextlib.asynccontextmanager
async def running_app(
    policy_text: str,
    redis_url: str,
    prefix: str,
    policy: Policy | None = None,
    *,
    cluster: bool = False,
) -> AsyncIterator[DecisionEngine]:
    """An App on free 127.0.0.1 ports; yields its engine; stopped on exit. `policy` replaces
    the parsed one (the scale scenario's generated customers)."""
    app = App(load(policy_text, redis_url, prefix, policy, cluster=cluster))
    try:
        await app.start(host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0)
        assert app.engine is not None
        yield app.engine
    finally:
        await app.stop(1.0)


async def delete_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key under `prefix:` (never FLUSH: the server may not be the bench's)."""
    client = Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=2000):
            batch.append(key)
            if len(batch) >= 2000:
                deleted += int(await client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await client.unlink(*batch))
    finally:
        await client.aclose()
    return deleted
