"""What a serving process caches per customer is off the cyclic collector's lists: deciding for
2,000 more customers (each compiled, planned and encoded, then held) leaves a full collection
with about as much to walk as before. A full collection stops the event loop for every tracked
object (~0.2–0.9 µs each): ~17 per cached customer was a 40–65 ms stall at 4,096 of them."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.benchmark.directory_load import ROUTE, api_key, catalog_text, populate
from gatekeeper.benchmark.httpclient import HttpConnection
from gatekeeper.config import load_config
from gatekeeper.store.keys import KeySpace
from tests.conftest import RedisTarget

CUSTOMERS = 2_500
WARM = 500


def _tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


async def test_cached_customers_cost_a_full_collection_nothing(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(catalog_text())
    config = load_config(policy, env=redis_target.env(key_prefix))
    keys = KeySpace(prefix=key_prefix, partitions=config.settings.redis.partitions)
    assert await populate(redis, keys, CUSTOMERS, updated_at=datetime.now(UTC).isoformat()) > 0
    app = await App(config).start(host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0)
    conn = await HttpConnection(app.authz_http_port).open()
    try:

        async def decide(first: int, last: int) -> None:
            for i in range(first, last):
                reply = await conn.send(conn.head("POST", ROUTE, {"x-api-key": api_key(f"c{i}")}))
                assert reply.status == 200, reply.body

        await decide(0, WARM)  # whatever serving allocates once
        before = _tracked()
        await decide(WARM, CUSTOMERS)
        after = _tracked()
        cached = app.policy.stats().size
    finally:
        await conn.close()
        await app.stop(0)
    assert cached == CUSTOMERS
    held = CUSTOMERS - WARM
    assert after - before < held // 10, (
        f"{after - before} more objects tracked after {held} more customers were cached"
    )
