"""A directory for the commands that read customers but do not serve (worker, export,
reconcile): the file's catalog with the API's plans, customers from Redis on demand."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

from redis.asyncio import Redis

from gatekeeper.config import ConfigError, LoadedConfig
from gatekeeper.directory.catalog import build_catalog, catalog_root
from gatekeeper.directory.live import LiveDirectory
from gatekeeper.directory.seed import reconcile_directory
from gatekeeper.model import Policy, frozen_map
from gatekeeper.store.customers import CustomerRecords
from gatekeeper.store.directory import DirectoryStore
from gatekeeper.store.keys import KeySpace

__all__ = ["load_catalog", "open_directory"]

log = logging.getLogger(__name__)


async def load_catalog(*, redis: Redis, keys: KeySpace, config: LoadedConfig) -> Policy:
    """The catalog in force: the file's, with the plans set through the API (a stored plan
    that no longer fits the file is left out and logged). Raises redis errors."""
    base = dataclasses.replace(config.policy, customers=frozen_map())
    if config.root is None:
        return base
    state = await DirectoryStore(redis=redis, keys=keys).load()
    if not state.plans:
        return base
    try:
        return build_catalog(catalog_root(config.root), state.plans)
    except ConfigError as exc:
        log.error("plans set through the API left out of the catalog: %s", exc)
        return base


async def open_directory(
    *,
    redis: Redis,
    keys: KeySpace,
    config: LoadedConfig,
    capacity: int | None = None,
    seed_at: datetime | None = None,
) -> LiveDirectory:
    """`seed_at`: reconcile the policy file's customers into the directory first (as `serve`
    does at start; a no-op when the same file was reconciled before). Raises redis errors."""
    records = CustomerRecords(redis=redis, keys=keys)
    if seed_at is not None:
        await reconcile_directory(
            redis=redis,
            keys=keys,
            records=records,
            root=config.root,
            updated_at=seed_at.isoformat(),
        )
    return LiveDirectory(
        catalog=await load_catalog(redis=redis, keys=keys, config=config),
        records=records,
        capacity=capacity or config.settings.directory.cache_size,
    )
