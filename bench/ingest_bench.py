"""Billing ingest throughput beside bare-insert baselines, and decision-to-committed latency.

    .venv/bin/python bench/ingest_bench.py [--events 100000] [--batch 2000] [--seconds 5]
        [--pg-dsn postgresql://postgres@127.0.0.1:5432/test] [--redis-url URL]

Figures, all measured in this one run:
  sqlite store   SqliteBillingStore.record() (events + lines + ledger, idempotent), per batch
  sqlite bare    executemany of the same rows into a plain table, one transaction per batch
  pg store       PostgresBillingStore.record() (COPY to staging + INSERT..ON CONFLICT..RETURNING)
  pg bare        copy_records_to_table of the same rows into a plain table, per batch
  latency        engine decisions flat out (32 clients) in this process while `gatekeeper worker`
                 ingests them in its own process (as deployed): event time -> recorded_at
Events are real (decided by the engine over Redis), then cloned with fresh ids to reach --events.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import asyncpg  # type: ignore[import-untyped]
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.billing import (
    BilledEvent,
    BillingCalendar,
    BillingStore,
    PostgresBillingStore,
    RecordResult,
    SqliteBillingStore,
)
from gatekeeper.billing.codec import EVENT_COLUMNS, PG_CONV, SQLITE_CONV, event_row
from gatekeeper.billing.rating import place
from gatekeeper.clock import ManualClock, SystemClock
from gatekeeper.events import UsageEvent
from gatekeeper.store import EmbeddedRedis
from tests.engine.harness import make_harness
from tests.pipeline.support import (
    CUSTOMERS,
    PARTITIONS,
    harness,
    request,
    run_decisions,
    test_policy,
    write_policy,
)

_INTS = {"quantity", "granted", "billable", "amount_nano", "estimate", "actual", "overage"}
_PLAIN = ", ".join(f"{c} {'BIGINT' if c in _INTS else 'TEXT'}" for c in EVENT_COLUMNS)


async def real_events(redis: Redis, prefix: str, n: int) -> list[BilledEvent]:
    """n events: real engine events, cloned with fresh ids."""
    h = harness(redis, prefix)
    await run_decisions(h, 3000, concurrency=64)
    policy = test_policy()
    cal = BillingCalendar.of(policy)
    base = []
    for stream in h.store.keys.all_usage_streams():
        for entry_id, fields in await redis.xrange(stream):
            base.append(cal.bill(UsageEvent.from_fields(fields), entry_id.decode()))
    out = []
    for i in range(n):
        b = base[i % len(base)]
        e = dataclasses.replace(b.event, id=f"{b.event.id}.{i}")
        out.append(dataclasses.replace(b, event=e))
    return out


def batches(events: Sequence[BilledEvent], size: int) -> list[Sequence[BilledEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def timed_store(store: BillingStore, events: Sequence[BilledEvent], size: int) -> float:
    t0 = time.perf_counter()
    for chunk in batches(events, size):
        result: RecordResult = await store.record(chunk)
        assert result.inserted == len(chunk)
    return len(events) / (time.perf_counter() - t0)


async def sqlite_bare(path: str, events: Sequence[BilledEvent], size: int) -> float:
    rows = [event_row(b, place(b, ()), SQLITE_CONV) for b in events]
    async with aiosqlite.connect(path, isolation_level=None) as db:
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            await db.execute(f"PRAGMA {pragma}")
        await db.execute(f"CREATE TABLE bare ({_PLAIN}, PRIMARY KEY (id))")
        sql = f"INSERT INTO bare VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
        t0 = time.perf_counter()
        for i in range(0, len(rows), size):
            await db.execute("BEGIN IMMEDIATE")
            await db.executemany(sql, rows[i : i + size])
            await db.execute("COMMIT")
        return len(rows) / (time.perf_counter() - t0)


async def pg_bare(dsn: str, schema: str, events: Sequence[BilledEvent], size: int) -> float:
    rows = [event_row(b, place(b, ()), PG_CONV) for b in events]
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "CREATE TABLE bare (id TEXT PRIMARY KEY, stream_id TEXT, kind TEXT, customer TEXT,"
            " plan TEXT, feature TEXT, unit TEXT, quantity BIGINT, granted BIGINT,"
            " billable BIGINT, amount_nano BIGINT, currency TEXT, decision_id TEXT,"
            " request_id TEXT, idempotency_key TEXT, occurred_at TIMESTAMPTZ, overage BOOLEAN,"
            " estimate BIGINT, actual BIGINT, period_start DATE, invoice_period_start DATE,"
            " line_kind TEXT)"
        )
        t0 = time.perf_counter()
        for i in range(0, len(rows), size):
            async with conn.transaction():
                await conn.copy_records_to_table("bare", records=rows[i : i + size])
        return len(rows) / (time.perf_counter() - t0)
    finally:
        await conn.close()


async def latency(
    redis: Redis, redis_url: str, dsn: str, store: BillingStore, seconds: float, tmp: Path
) -> tuple[float, float, int]:
    """p50, p99 (ms) from decision to commit: decisions flat out (32 clients) in this process,
    `gatekeeper worker` in its own process (as deployed). Per event: recorded_at (the store's
    clock at insert; PostgreSQL: transaction start) minus the event's time (the decision)."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC)
    policy_file = write_policy(tmp)
    clock: ManualClock = SystemClock()  # type: ignore[assignment]  # real time: today's periods
    h = make_harness(redis, test_policy(), prefix, clock=clock, partitions=PARTITIONS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")} | {
        "GATEKEEPER_CONFIG": str(policy_file), "GATEKEEPER_REDIS_URL": redis_url,
        "GATEKEEPER_REDIS_KEY_PREFIX": prefix, "GATEKEEPER_REDIS_PARTITIONS": str(PARTITIONS),
        "GATEKEEPER_BILLING_DSN": dsn,
    }  # fmt: skip
    log = tmp / f"worker-{prefix}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper", "worker", "--block-ms", "20", "--batch", "1000",
             "--trim-interval", "0"], env=env, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        while " partitions of " not in log.read_text():
            await asyncio.sleep(0.05)
        base = await store.event_count()
        rng = random.Random(1)
        deadline = time.perf_counter() + seconds
        admitted = 0

        async def client() -> None:
            nonlocal admitted
            while time.perf_counter() < deadline:
                d = await h.engine.decide(request(rng, rng.choice(CUSTOMERS)))
                admitted += d.allowed

        await asyncio.gather(*(client() for _ in range(32)))
        total = sum([await redis.xlen(s) for s in h.store.keys.all_usage_streams()])
        while await store.event_count() - base < total:
            await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    lat = sorted(await _latencies(store, since))
    await _cleanup(redis, prefix)
    return statistics.median(lat), lat[int(len(lat) * 0.99)], admitted


async def _latencies(store: BillingStore, since: datetime) -> list[float]:
    """Milliseconds from event time to recorded_at, for the events of this run."""
    if isinstance(store, SqliteBillingStore):
        rows = await store._conn.execute_fetchall(
            "SELECT (julianday(recorded_at) - julianday(occurred_at)) * 86400000.0 "
            "FROM usage_events WHERE julianday(recorded_at) >= julianday(?)",
            (SQLITE_CONV.ts(since),),
        )
        return [float(r[0]) for r in rows]
    assert isinstance(store, PostgresBillingStore)
    async with store._pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT EXTRACT(EPOCH FROM recorded_at - occurred_at) * 1000 FROM usage_events "
            "WHERE recorded_at >= $1",
            since,
        )
    return [float(r[0]) for r in rows]


async def _cleanup(redis: Redis, prefix: str) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await redis.delete(*keys[i : i + 500])


async def main(args: argparse.Namespace) -> None:
    embedded = None
    url = args.redis_url or os.environ.get("GATEKEEPER_REDIS_URL")
    if not url:
        embedded = EmbeddedRedis().start()
        url = embedded.url
    redis = Redis.from_url(url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    tmp = tempfile.mkdtemp(prefix="gk-ingest-")
    schema = f"gkbench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.pg_dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        events = await real_events(redis, prefix, args.events)
        await _cleanup(redis, prefix)
        print(f"{len(events)} events, batches of {args.batch}")
        sq = await SqliteBillingStore.open(Path(tmp) / "store.sqlite")
        sq_rate = await timed_store(sq, events, args.batch)
        sq_bare = await sqlite_bare(str(Path(tmp) / "bare.sqlite"), events, args.batch)
        pg = await PostgresBillingStore.connect(
            args.pg_dsn, server_settings={"search_path": schema}
        )
        pg_rate = await timed_store(pg, events, args.batch)
        pg_base = await pg_bare(args.pg_dsn, schema, events, args.batch)
        print(f"sqlite store {sq_rate:10.0f} ev/s   bare executemany {sq_bare:10.0f} ev/s"
              f"   ratio {sq_rate / sq_bare:.2f}")  # fmt: skip
        print(f"pg     store {pg_rate:10.0f} ev/s   bare COPY        {pg_base:10.0f} ev/s"
              f"   ratio {pg_rate / pg_base:.2f}")  # fmt: skip
        pg_dsn = (
            f"{args.pg_dsn}{'&' if '?' in args.pg_dsn else '?'}options=-csearch_path%3D{schema}"
        )
        targets = (("sqlite", sq, f"sqlite://{Path(tmp) / 'store.sqlite'}"), ("pg", pg, pg_dsn))
        for name, store, dsn in targets:
            p50, p99, n = await latency(redis, url, dsn, store, args.seconds, Path(tmp))
            lat = f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  ({n} decisions)"
            print(f"{name:6} decision->committed {lat}")
        await sq.close()
        await pg.close()
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
        await redis.aclose()
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis-url")
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("GATEKEEPER_TEST_POSTGRES_DSN")
        or "postgresql://postgres@127.0.0.1:5432/test",
    )
    asyncio.run(main(parser.parse_args()))
