"""What a full pass of the cyclic garbage collector walks in a serving process, and how long it
takes, after a warm-up over a large directory.

    .venv/bin/python bench/gc_census.py [CUSTOMERS=100000] [DECISIONS=200000]

Populates CUSTOMERS customers (one plan, one API key each) under a fresh key prefix of the Redis
at $GATEKEEPER_REDIS_URL (default redis://127.0.0.1:6379/0), starts an App in this process
(what `serve` runs; start-up objects frozen as serve freezes them), makes DECISIONS decisions
on its ext_authz HTTP port from a Zipf(1.1) mix over 8 connections, then prints the objects
the collector tracks (by type) and the time of five full collections. The prefix is deleted
afterwards. bench/README.md ("Control plane, fifth run") has its figures before and after the
cache was taken off the collector's lists.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from gatekeeper.app import App
from gatekeeper.benchmark.directory_load import ROUTE, ZipfMix, api_key, catalog_text, populate
from gatekeeper.benchmark.httpclient import HttpConnection
from gatekeeper.benchmark.inprocess import delete_prefix
from gatekeeper.config import load_config
from gatekeeper.store.keys import KeySpace

CONNECTIONS = 8


async def main(customers: int, decisions: int) -> None:
    url = os.environ.get("GATEKEEPER_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"gc-census-{uuid.uuid4().hex[:8]}"
    env = {"GATEKEEPER_REDIS_URL": url, "GATEKEEPER_REDIS_KEY_PREFIX": prefix}
    redis = Redis.from_url(url)
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(catalog_text())
        config = load_config(policy, env=env)
        keys = KeySpace(prefix=prefix, partitions=config.settings.redis.partitions)
        try:
            await populate(redis, keys, customers, updated_at=datetime.now(UTC).isoformat())
            app = await App(config).start(
                host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
            )
            try:
                gc.collect()
                gc.freeze()  # as serve does once started
                await _warm(app.authz_http_port, ZipfMix(customers).draw(decisions))
                print(app.policy.stats())
                _census()
            finally:
                await app.stop(0)
        finally:
            print(f"deleted {await delete_prefix(url, prefix):,} keys under {prefix}")
            await redis.aclose()


async def _warm(port: int, ids: list[str]) -> None:
    statuses: collections.Counter[int] = collections.Counter()

    async def one(part: list[str]) -> None:
        conn = await HttpConnection(port).open()
        try:
            for customer in part:
                reply = await conn.send(conn.head("POST", ROUTE, {"x-api-key": api_key(customer)}))
                statuses[reply.status] += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(ids[k::CONNECTIONS]) for k in range(CONNECTIONS)))
    print(f"{len(ids):,} decisions in {time.perf_counter() - started:.1f} s: {dict(statuses)}")


def _census() -> None:
    gc.collect(0)
    gc.collect(1)
    tracked = gc.get_objects(2)
    kinds = collections.Counter(type(o).__name__ for o in tracked)
    print(f"tracked in the oldest generation: {len(tracked):,}")
    print(", ".join(f"{name} {n:,}" for name, n in kinds.most_common(15)))
    del tracked
    for _ in range(5):
        started = time.perf_counter()
        gc.collect()
        print(f"full collection: {(time.perf_counter() - started) * 1e3:.2f} ms")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [100_000, 200_000][len(args) :])))
