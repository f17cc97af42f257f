"""`gatekeeper import`, `gatekeeper directory import|export` through the CLI entry point."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gatekeeper.cli import main
from gatekeeper.store.customers import CustomerRecord, RecordChange
from tests.conftest import RedisTarget, also_on_cluster
from tests.directory.support import PARTITIONS, jsonl, records, sha


def _env(target: RedisTarget, prefix: str) -> dict[str, str]:
    return {**target.env(prefix), "GATEKEEPER_REDIS_PARTITIONS": str(PARTITIONS)}


async def _run(args: list[str], env: dict[str, str]) -> int:
    # main() runs its own event loop (asyncio.run): give it a thread of its own.
    return await asyncio.to_thread(main, args, env=env)


def _customer(i: int) -> dict[str, object]:
    doc: dict[str, object] = {"id": f"c{i:06d}", "plan": "pro" if i % 3 else "free"}
    if i % 2:
        doc["api_keys"] = [{"id": "main", "sha256": sha(f"key-{i}")}]
    if i % 5 == 0:
        doc["billing_day"] = 1 + i % 28
    return doc


@pytest.mark.slow
async def test_import_of_100k_lines_with_a_bad_one_then_a_rerun_imports_nothing(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    lines: list[dict[str, object] | str] = [_customer(i) for i in range(100_000)]
    lines[54_320] = {"id": "c054320", "plan": "platinum"}  # line 54,321
    path = tmp_path / "customers.jsonl"
    path.write_bytes(jsonl(lines))
    env = _env(redis_target, key_prefix)

    assert await _run(["import", str(path)], env) == 2
    out, err = capsys.readouterr()
    assert out.strip() == "imported 99999, unchanged 0, refused 1"
    assert err.splitlines() == [f"{path}:54321: plan: unknown plan 'platinum'"]
    store = records(redis, key_prefix)
    assert await store.count() == 99_999
    assert await store.owner_of_key(sha("key-99999")) == "c099999"

    assert await _run(["import", str(path)], env) == 2
    out, err = capsys.readouterr()
    assert out.strip() == "imported 0, unchanged 99999, refused 1"
    assert err.splitlines() == [f"{path}:54321: plan: unknown plan 'platinum'"]
    record = await store.get("c000001")
    assert record is not None and record.version == 1


@also_on_cluster()
async def test_export_then_import_into_an_empty_prefix_reproduces_the_records(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(
        "id,plan,billing_day,description,key_id,key_sha256,key_label,key_expires_at,overrides,grants\n"
        f'acme,pro,15,"Acme, Inc.",k1,{sha("1")},prod,,"{{""chat_requests"": {{""limit"": 5}}}}",\n'
        f"acme,,,,k2,{sha('2')},,2027-01-31T00:00:00Z,,\n"
        'beta,free,,,,,,,,"[{""feature"": ""llm_tokens"", ""amount"": 10, ""id"": ""promo""}]"\n'
    )
    env = _env(redis_target, key_prefix)
    assert await _run(["import", str(csv_file)], env) == 0
    assert capsys.readouterr().out.strip() == "imported 2, unchanged 0, refused 0"

    backup = tmp_path / "backup.jsonl"
    assert await _run(["directory", "export", "--out", str(backup)], env) == 0
    assert capsys.readouterr().err.strip() == f"exported 2 customers to {backup}"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    lines = [json.loads(x) for x in backup.read_text().splitlines()]
    assert {x["id"] for x in lines} == {"acme", "beta"}
    assert all(x["source"] == "api" and x["updated_at"] for x in lines)

    other = f"{key_prefix}-copy"
    copy_env = _env(redis_target, other)
    try:
        assert await _run(["directory", "import", str(backup)], copy_env) == 0
        assert capsys.readouterr().out.strip() == "imported 2, unchanged 0, refused 0"
        source, copy = records(redis, key_prefix), records(redis, other)
        for cid in ("acme", "beta"):
            a, b = await source.get(cid), await copy.get(cid)
            assert a is not None and b is not None and a.doc == b.doc
        assert await copy.owner_of_key(sha("2")) == "acme"
        # to stdout, and the same backup imported again changes nothing
        assert await _run(["directory", "export"], copy_env) == 0
        exported = capsys.readouterr().out.splitlines()
        strip = [{k: v for k, v in json.loads(x).items() if k != "updated_at"} for x in exported]
        assert sorted(strip, key=lambda x: x["id"]) == sorted(
            ({k: v for k, v in x.items() if k != "updated_at"} for x in lines),
            key=lambda x: x["id"],
        )
        assert await _run(["import", str(backup)], copy_env) == 0
        assert capsys.readouterr().out.strip() == "imported 0, unchanged 2, refused 0"
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{other}:*", count=1000)]
        if keys:
            await redis.delete(*keys)


@also_on_cluster()
async def test_reimport_keeps_keys_created_since(
    redis: Redis, redis_target: RedisTarget, key_prefix: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    env = _env(redis_target, key_prefix)
    path = tmp_path / "c.ndjson"
    path.write_bytes(jsonl([{"id": "acme", "plan": "pro",
                             "api_keys": [{"id": "k1", "sha256": sha("1")}]}]))  # fmt: skip
    assert await _run(["import", str(path)], env) == 0
    store = records(redis, key_prefix)

    def add_key(before: CustomerRecord | None) -> RecordChange[None]:
        assert before is not None
        keys = [*before.doc["api_keys"], {"id": "k2", "sha256": sha("2")}]
        doc = {**before.doc, "api_keys": keys}
        return RecordChange(None, CustomerRecord("acme", doc))

    await store.change("acme", add_key, channel=store.keys.invalidate_channel())
    assert await _run(["import", str(path)], env) == 0
    assert "unchanged 1" in capsys.readouterr().out
    acme = await store.get("acme")
    assert acme is not None and [k["id"] for k in acme.doc["api_keys"]] == ["k1", "k2"]


async def test_bad_input_and_runtime_failures_have_their_exit_codes(
    redis_target: RedisTarget, key_prefix: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    env = _env(redis_target, key_prefix)
    good = tmp_path / "c.jsonl"
    good.write_bytes(jsonl([{"id": "a", "plan": "pro"}]))
    assert await _run(["import", str(tmp_path / "missing.jsonl")], env) == 2
    assert "cannot read" in capsys.readouterr().err
    assert await _run(["import", str(tmp_path / "c.txt")], env) == 2
    assert "--format" in capsys.readouterr().err
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("id,colour\na,red\n")
    assert await _run(["import", str(bad_header)], env) == 2
    assert "unknown column 'colour'" in capsys.readouterr().err
    # no GATEKEEPER_REDIS_URL: the data directory's embedded Redis, which export refuses to
    # create (exit 2, naming it) and import creates, after which export finds the customer
    no_redis = {k: v for k, v in env.items() if k != "GATEKEEPER_REDIS_URL"}
    no_redis["GATEKEEPER_DATA_DIR"] = str(tmp_path / "data")
    assert await _run(["directory", "export"], no_redis) == 2
    assert str(tmp_path / "data") in capsys.readouterr().err
    assert await _run(["import", str(good)], no_redis) == 0
    assert "imported 1" in capsys.readouterr().out
    assert await _run(["directory", "export"], no_redis) == 0
    assert '"id":"a"' in capsys.readouterr().out
    down = {**env, "GATEKEEPER_REDIS_URL": "redis://127.0.0.1:1/0"}
    assert await _run(["import", str(good)], down) == 1
    assert "run the same import again" in capsys.readouterr().err
    assert await _run(["directory", "export"], down) == 1
    assert await _run(["directory"], env) == 2


def test_help_documents_the_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "--help"]) == 0
    out = capsys.readouterr().out
    assert "JSON Lines" in out and "key_sha256" in out and "refused K" in out
    assert main(["directory", "--help"]) == 0
    assert "export" in capsys.readouterr().out
