"""A real gatekeeper App (gRPC, ext_authz HTTP, API + dashboard) on free ports, real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.billing.periods import BillingCalendar
from gatekeeper.clock import SystemClock
from gatekeeper.config import load_config
from gatekeeper.pipeline.worker import BillingWorker, WorkerOptions
from gatekeeper.store.keys import KeySpace
from tests.conftest import RedisTarget
from tests.ui.browser import browser, screenshots

__all__ = ["browser", "screenshots"]

POLICY = Path(__file__).parents[1] / "e2e" / "policy.yaml"
ADMIN = "dashboard-operator-token"
HOBBYIST_KEY = "gk-test-hobbyist"  # plan free: chat_requests 5 a day, hard


async def start_app(target: RedisTarget, key_prefix: str, tmp_path: Path) -> App:
    env = {**target.env(key_prefix), "GATEKEEPER_ADMIN_TOKEN": ADMIN}
    config = load_config(POLICY, env=env)
    billing = str(tmp_path / "billing.sqlite")  # the forecast reads the revenue ledger
    return await App(config, billing_sqlite_path=billing).start(
        host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
    )


@pytest.fixture
async def app(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path
) -> AsyncIterator[App]:
    application = await start_app(redis_target, key_prefix, tmp_path)
    try:
        yield application
    finally:
        await application.stop(0.2)


async def chat(app: App, key: str, n: int = 1) -> list[int]:
    """`n` chat requests through the ext_authz HTTP fast path (the decision path Envoy uses)."""
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            async with session.post(
                f"http://127.0.0.1:{app.authz_http_port}/v1/chat/completions",
                headers={"x-api-key": key},
            ) as r:
                statuses.append(r.status)
    return statuses


async def following(app: App, customer: str, timeout: float = 5.0) -> None:
    """Wait until the server's stream watch notices new usage of `customer` for sure."""
    assert app.dashboard is not None
    async with asyncio.timeout(timeout):
        while not app.dashboard.watch.following(customer):
            await asyncio.sleep(0.02)


async def bill_app(app: App) -> int:
    """The billing worker over the app's streams into the app's billing store, until drained
    (what `gatekeeper worker` does beside a serve)."""
    store = await app.billing_store()
    assert app.redis is not None and store is not None
    settings = app.config.settings.redis
    worker = BillingWorker(
        redis=app.redis.client,
        store=store,
        keys=KeySpace(prefix=settings.key_prefix, partitions=settings.partitions),
        calendar=BillingCalendar(app.policy),
        clock=SystemClock(),
        options=WorkerOptions(batch=50, block_ms=10, trim_interval_s=0),
    )
    await worker.ensure_groups()
    return await worker.drain()
