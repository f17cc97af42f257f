"""`gatekeeper export` and `gatekeeper reconcile` through the CLI entry point."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gatekeeper.billing import BillingStore
from gatekeeper.cli import main
from gatekeeper.money import NANO
from tests.billing.stores import StoreTarget
from tests.conftest import RedisTarget, also_on_cluster
from tests.forward.helpers import validate
from tests.pipeline.support import PARTITIONS, harness, keyspace, make_worker, run_decisions
from tests.pipeline.support import write_policy as _write_policy


def cli_env(
    store_target: StoreTarget, redis_target: RedisTarget, prefix: str, tmp: Path
) -> dict[str, str]:
    return {
        "GATEKEEPER_CONFIG": str(_write_policy(tmp)),
        **redis_target.env(prefix),
        "GATEKEEPER_REDIS_PARTITIONS": str(PARTITIONS),
        "GATEKEEPER_BILLING_DSN": store_target.dsn,
    }


@also_on_cluster()
async def test_export_lists_event_ids_and_totals_reconcile(
    store_target: StoreTarget, store: BillingStore, redis: Redis, redis_target: RedisTarget,
    key_prefix: str, tmp_path: Path,
) -> None:  # fmt: skip
    await _billed(redis, store, key_prefix, 600)
    env = cli_env(store_target, redis_target, key_prefix, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    # alpha bills from the 15th: "2026-11" = the period starting in November = 2026-11-15
    for period in ("2026-11", "2026-11-15", "2026-11-30"):
        args = ["export", "--customer", "alpha", "--period", period, "--out", str(out)]
        assert await _run(args, env) == 0
    doc = json.loads((out / "invoice-alpha-2026-11-15.json").read_text())
    assert (doc["period_start"], doc["period_end"]) == ("2026-11-15", "2026-12-15")
    events = {e.event.id: e.event for e in await store.invoice_events("alpha", date(2026, 11, 15))}
    listed = [e["id"] for line in doc["lines"] for e in line["events"]]
    assert sorted(listed) == sorted(events)  # every event on exactly one line
    for line in doc["lines"]:
        assert line["amount_nano"] == sum(events[e["id"]].amount_nano for e in line["events"])
        assert line["quantity"] == sum(events[e["id"]].quantity for e in line["events"])
    total = doc["totals"]["USD"]
    assert total["amount_nano"] == sum(x["amount_nano"] for x in doc["lines"])
    for billed in [*doc["lines"], total]:  # money as everywhere: what is billed, 2 decimals
        assert billed["amount"] == f"{Decimal(billed['amount_minor']).scaleb(-2):.2f}"
    assert total["amount_minor"] == sum(x["amount_minor"] for x in doc["lines"])
    with (out / "invoice-alpha-2026-11-15.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    lines, totals = rows[:-1], rows[-1]
    assert sorted(i for r in lines for i in r["event_ids"].split()) == sorted(events)
    assert totals["line_id"] == "total"
    assert int(totals["amount_minor"]) == sum(int(r["amount_minor"]) for r in lines)
    assert await _run(["export", "--customer", "alpha", "--period", "11/2026"], env) == 2
    # the same period's usage events as a CloudEvents 1.0 batch (DESIGN §6)
    args = ["export", "--customer", "alpha", "--period", "2026-11", "--out", str(out)]
    assert await _run([*args, "--format", "cloudevents"], env) == 0
    batch = json.loads((out / "usage-alpha-2026-11-15.json").read_text())
    assert sorted(ce["id"] for ce in batch) == sorted(events)
    assert [ce["time"] for ce in batch] == sorted(ce["time"] for ce in batch)
    for ce in batch:
        validate(ce)
        event, data = events[ce["id"]], ce["data"]
        assert (ce["specversion"], ce["subject"], ce["source"]) == ("1.0", "alpha", "gatekeeper")
        assert (data["feature"], data["quantity"], data["unit"]) == (
            event.feature, event.quantity, event.unit,
        )  # fmt: skip
        assert Decimal(data["price"]) * NANO == event.amount_nano
        assert data["request_id"] == (event.request_id or None)
        assert "idempotency_key" in data


@also_on_cluster()
async def test_reconcile_finds_no_difference_then_a_planted_one(
    store_target: StoreTarget, store: BillingStore, redis: Redis, redis_target: RedisTarget,
    key_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    await _billed(redis, store, key_prefix, 600)
    env = cli_env(store_target, redis_target, key_prefix, tmp_path)
    assert await _run(["reconcile", "--period", "2026-11-24"], env) == 0
    out = capsys.readouterr().out
    assert " 0 differences" in out and "DIFF" not in out
    # a counter that moved without an event (or an event the store lost): reported, exit 1
    spend = keyspace(key_prefix).spend("beta", "202611010000")
    await redis.hincrby(spend, "u", 7)
    assert await _run(["reconcile", "--period", "2026-11", "--customer", "beta"], env) == 1
    out = capsys.readouterr().out
    assert "DIFF customer=beta counter=spend" in out and "diff=+7" in out
    assert await _run(["reconcile", "--period", "2026-11", "--customer", "alpha"], env) == 0


async def _billed(redis: Redis, store: BillingStore, key_prefix: str, decisions: int) -> None:
    """`decisions` decisions made, then billed by a worker until nothing is left."""
    await run_decisions(harness(redis, key_prefix), decisions)
    await make_worker(redis, store, key_prefix).drain()


async def _run(args: list[str], env: dict[str, str]) -> int:
    # main() runs its own event loop (asyncio.run): give it a thread of its own.
    return await asyncio.to_thread(main, args, env=env)


async def test_export_makes_its_out_folder_and_refuses_an_unknown_customer(
    store_target: StoreTarget, store: BillingStore, redis: Redis, redis_target: RedisTarget,
    key_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    await _billed(redis, store, key_prefix, 30)
    env = cli_env(store_target, redis_target, key_prefix, tmp_path)
    out = tmp_path / "exports" / "2026-11"  # `--out exports/`: made, as the README shows it
    args = ["export", "--period", "2026-11", "--out", str(out)]
    assert await _run([*args, "--customer", "alpha"], env) == 0
    assert (out / "invoice-alpha-2026-11-15.json").is_file()
    capsys.readouterr()
    # a customer neither the policy nor the directory knows, with no usage: no empty invoice
    nowhere = tmp_path / "nowhere"
    unknown = ["export", "--period", "2026-11", "--out", str(nowhere), "--customer", "nobody"]
    assert await _run(unknown, env) == 2
    assert "nobody" in capsys.readouterr().err
    assert not nowhere.exists()
    # a known customer without usage in the period: an honest empty invoice
    assert await _run([*args, "--customer", "beta", "--period", "2020-01"], env) == 0
    doc = json.loads((out / "invoice-beta-2020-01-01.json").read_text())
    assert doc["lines"] == []
    # --out naming a file: bad input, naming it
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert await _run([*args[:3], "--out", str(a_file), "--customer", "alpha"], env) == 2
    assert str(a_file) in capsys.readouterr().err


@also_on_cluster()
async def test_reconcile_against_a_redis_without_usage_says_so(
    store_target: StoreTarget, store: BillingStore, redis: Redis, redis_target: RedisTarget,
    key_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    await _billed(redis, store, key_prefix, 30)
    # the billing store has the period's usage; the Redis (a fresh key prefix) has nothing
    env = cli_env(store_target, redis_target, f"{key_prefix}fresh", tmp_path)
    assert await _run(["reconcile", "--period", "2026-11"], env) == 2
    captured = capsys.readouterr()
    assert "DIFF" not in captured.out and "difference" not in captured.out
    assert "holds no gatekeeper usage" in captured.err
    assert f"{key_prefix}fresh" in captured.err
