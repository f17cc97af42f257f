"""Importing customers into the directory in a real Redis: created, replaced with keys and own
cap kept, unchanged on a re-run, refused lines named and the rest imported."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from redis.asyncio import Redis

from gatekeeper.directory.bulk import BulkFormat, LineError, read_entries
from gatekeeper.directory.importer import Importer, ImportResult
from gatekeeper.store.customers import CustomerRecord, CustomerRecords, RecordChange, Source
from tests.directory.support import NOW, catalog, clock, jsonl, records, sha


async def _import(
    store: CustomerRecords, data: bytes, fmt: BulkFormat = BulkFormat.JSONL, batch: int = 500
) -> tuple[ImportResult, list[LineError]]:
    errors: list[LineError] = []
    importer = Importer(
        records=store,
        catalog=catalog(),
        clock=clock(),
        actor="tester",
        report=errors.append,
        max_keys=5,
        batch=batch,
    )
    result = await importer.run(read_entries(io.BytesIO(data), fmt))
    return result, errors


def _key(kid: str, seed: str, **more: object) -> dict[str, object]:
    return {"id": kid, "sha256": sha(seed), **more}


async def _store(store: CustomerRecords, cid: str, doc: dict[str, Any], **more: Any) -> None:
    def put(before: CustomerRecord | None) -> RecordChange[None]:
        return RecordChange(None, CustomerRecord(cid, doc, **more))

    await store.change(cid, put, channel=store.keys.invalidate_channel())


async def test_new_customers_are_created_audited_announced_and_a_rerun_writes_nothing(
    redis: Redis, key_prefix: str
) -> None:
    store = records(redis, key_prefix)
    pubsub = redis.pubsub()
    await pubsub.subscribe(store.keys.invalidate_channel())
    data = jsonl(
        [
            {
                "id": "acme",
                "plan": "pro",
                "billing_day": 15,
                "api_keys": [_key("k1", "a")],
                "spend_cap": {"amount": "250.00"},
                "description": "Acme",
            },
            {"id": "beta", "plan": "free", "grants": [{"feature": "llm_tokens", "amount": 5}]},
        ]
    )
    assert await _import(store, data) == (ImportResult(created=2), [])
    acme = await store.get("acme")
    assert acme is not None and acme.source is Source.API
    assert acme.updated_at == NOW.isoformat() and acme.version == 1
    assert acme.doc == {
        "plan": "pro",
        "billing_day": 15,
        "api_keys": [_key("k1", "a")],
        "spend_cap": {"amount": "250.00"},
        "description": "Acme",
    }
    assert await store.owner_of_key(sha("a")) == "acme"
    audit = await store.audit(store.keys.partition("acme"), after=None, limit=10)
    entry = {k.decode(): v.decode() for k, v in audit[0][1].items()}
    assert (entry["what"], entry["target"], entry["actor"]) == (
        "customer.import",
        "customer:acme",
        "tester",
    )
    assert json.loads(entry["before"]) is None and json.loads(entry["after"]) == dict(acme.doc)
    heard = []
    async with asyncio.timeout(5):
        while len(heard) < 2:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message:
                heard.append(message["data"])
    assert sorted(heard) == [b"customer:acme", b"customer:beta"]
    await pubsub.aclose()

    assert await _import(store, data) == (ImportResult(unchanged=2), [])
    again = await store.get("acme")
    assert again is not None and again.version == 1  # not written


async def test_an_existing_customer_keeps_its_keys_own_cap_and_webhooks(
    redis: Redis, key_prefix: str
) -> None:
    store = records(redis, key_prefix)
    hook = {"id": "wh1", "url": "https://example.com/hook"}
    await _store(
        store,
        "acme",
        {
            "plan": "free",
            "description": "old",
            "billing_day": 3,
            "api_keys": [_key("k1", "a", label="prod", revoked=True)],
            "spend_cap": {"amount": "100.00", "action": "block"},
        },
        source=Source.FILE,
        webhooks=(hook,),
    )
    line = {
        "id": "acme",
        "plan": "pro",
        "overrides": {"chat_requests": {"limit": 9}},
        "api_keys": [_key("k1", "a"), _key("k2", "b")],
        "spend_cap": {"amount": "1.00"},
    }
    assert await _import(store, jsonl([line])) == (ImportResult(updated=1), [])
    acme = await store.get("acme")
    assert acme is not None and acme.source is Source.API and acme.webhooks == (hook,)
    assert acme.doc == {
        "plan": "pro",  # replaced
        "overrides": {"chat_requests": {"limit": 9}},
        # description and billing_day: left out of the line, so removed
        "api_keys": [_key("k1", "a", label="prod", revoked=True), _key("k2", "b")],
        "spend_cap": {"amount": "100.00", "action": "block"},  # its own, kept
    }
    assert await store.owner_of_key(sha("b")) == "acme"
    assert await _import(store, jsonl([line])) == (ImportResult(unchanged=1), [])


async def test_refused_lines_are_named_and_the_rest_is_imported(
    redis: Redis, key_prefix: str
) -> None:
    store = records(redis, key_prefix)
    await _store(store, "held", {"plan": "pro", "api_keys": [_key("k1", "a")]})
    await _store(store, "owner", {"plan": "pro", "api_keys": [_key("o1", "owned")]})
    lines: list[dict[str, object] | str] = [{"id": f"ok{i}", "plan": "free"} for i in range(40)]
    lines[3] = {"id": "typo", "plan": "prp"}
    lines[7] = {"id": "badkey", "plan": "pro", "api_keys": [{"id": "k", "sha256": "abc"}]}
    lines[11] = {"id": "ok1", "plan": "pro"}  # duplicate of line 2
    lines[15] = {"id": "held", "plan": "pro", "api_keys": [_key("k1", "other")]}
    lines[19] = {
        "id": "thief",
        "plan": "pro",
        "api_keys": [_key("t1", "mine"), _key("t2", "owned")],
    }
    lines[23] = '{"id": "broken"'
    lines[27] = {"id": "held", "plan": "pro", "api_keys": [_key("k9", "a")]}  # dup id too
    lines[31] = {"id": "cap", "plan": "pro", "spend_cap": {"amount": "lots"}}
    result, errors = await _import(store, jsonl(lines), batch=8)  # conflicts narrowed by halves
    assert result == ImportResult(created=32, refused=8)
    assert [(e.line, e.field) for e in errors] == [
        (4, "plan"),
        (8, "api_keys[0].sha256"),
        (12, "id"),
        (16, "api_keys[0].sha256"),
        (20, "api_keys[1].sha256"),
        (24, ""),
        (28, "id"),
        (32, "spend_cap.amount"),
    ]
    reasons = [e.reason for e in errors]
    assert reasons[0] == "unknown plan 'prp'; did you mean 'pro'?"
    assert reasons[1].startswith("expected 64 lower-case hex characters")
    assert reasons[2].startswith("duplicate customer id 'ok1'")
    assert reasons[3].startswith("the customer's key 'k1' has another hash")
    assert reasons[4] == "the key hash belongs to customer 'owner'"
    assert await store.get("thief") is None and await store.get("typo") is None
    assert await store.count() == 2 + 32
    ok = await store.get("ok39")
    assert ok is not None and ok.doc == {"plan": "free"}


async def test_keys_beyond_the_limit_and_a_hash_the_customer_holds_refuse_the_line(
    redis: Redis, key_prefix: str
) -> None:
    store = records(redis, key_prefix)
    await _store(
        store, "acme", {"plan": "pro", "api_keys": [_key(f"k{i}", str(i)) for i in range(4)]}
    )
    lines = [
        {"id": "acme", "plan": "pro", "api_keys": [_key("n1", "x"), _key("n2", "y")]},
    ]
    result, errors = await _import(store, jsonl(lines))
    assert result.refused == 1
    assert [(e.field, e.reason) for e in errors] == [
        ("api_keys", "the customer would hold 6 API keys; at most 5 (revoked ones count)")
    ]
    result, errors = await _import(
        store, jsonl([{"id": "acme", "plan": "pro", "api_keys": [_key("again", "2")]}])
    )
    assert [(e.field, e.reason) for e in errors] == [
        ("api_keys[0].sha256", "the customer's key 'k2' has this hash")
    ]


async def test_csv_import_names_the_row_and_column_at_fault(redis: Redis, key_prefix: str) -> None:
    store = records(redis, key_prefix)
    text = (
        "id,plan,key_id,key_sha256,key_expires_at\n"
        f"acme,pro,k1,{sha('1')},\n"
        f"acme,,k2,{sha('2')},tomorrow\n"
        f"beta,free,k1,{sha('3')},\n"
    )
    result, errors = await _import(store, text.encode(), BulkFormat.CSV)
    assert result == ImportResult(created=1, refused=1)
    assert [(e.line, e.field) for e in errors] == [(3, "key_expires_at")]
    assert errors[0].reason.startswith("expected an ISO 8601 date-time")
