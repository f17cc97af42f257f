"""The customer directory's records in a real Redis: compare-and-set per customer, indexes,
key pointers, audit and invalidation, bulk writes, pagination."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gatekeeper.store.customers import (
    CustomerRecord,
    CustomerRecords,
    DirectoryConflict,
    RecordChange,
    Source,
)
from gatekeeper.store.directory import AuditRecord
from gatekeeper.store.keys import KeySpace
from tests.conftest import RedisTarget

SHA_A = "a" * 64
SHA_B = "b" * 64


def _records(redis: Redis, prefix: str, partitions: int = 4) -> CustomerRecords:
    return CustomerRecords(redis=redis, keys=KeySpace(prefix=prefix, partitions=partitions))


def _doc(plan: str = "pro", *hashes: str, **more: object) -> dict[str, object]:
    keys = [{"id": f"k{i}", "sha256": h} for i, h in enumerate(hashes)]
    return {"plan": plan, "api_keys": keys, **more} if keys else {"plan": plan, **more}


def _put(doc: dict[str, object] | None, customer: str = "acme"):  # type: ignore[no-untyped-def]
    def compute(before: CustomerRecord | None) -> RecordChange[int]:
        record = None if doc is None else CustomerRecord(customer, doc, Source.API)
        audit = AuditRecord("admin", "customer.replace", f"customer:{customer}", None, doc, _NOW)
        return RecordChange(0 if before is None else before.version, record, audit)

    return compute


_NOW = datetime(2026, 12, 7, tzinfo=UTC)


async def test_a_change_writes_one_record_its_indexes_audit_and_invalidation(
    redis: Redis, key_prefix: str
) -> None:
    records = _records(redis, key_prefix)
    channel = f"{key_prefix}:invalidate"
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    assert await records.change("acme", _put(_doc("pro", SHA_A)), channel=channel) == 0
    record = await records.get("acme")
    assert record is not None and record.version == 1 and record.plan == "pro"
    assert record.key_hashes == (SHA_A,)
    assert await records.owner_of_key(SHA_A) == "acme"
    assert await records.page(after=None, limit=10) == ["acme"]
    assert await records.page(after=None, limit=10, plan="pro") == ["acme"]
    assert await records.count() == 1 and await records.count("pro") == 1
    partition = records.keys.partition("acme")
    audit = await records.audit(partition, after=None, limit=10)
    assert len(audit) == 1 and audit[0][1][b"what"] == b"customer.replace"
    messages = []
    async with asyncio.timeout(5):
        while not messages:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message:
                messages.append(message["data"])
    assert messages == [b"customer:acme"]
    await pubsub.aclose()

    # a plan change moves the customer between plan indexes; the version grows
    assert await records.change("acme", _put(_doc("free", SHA_A)), channel=channel) == 1
    assert await records.page(after=None, limit=10, plan="pro") == []
    assert await records.page(after=None, limit=10, plan="free") == ["acme"]
    assert (await records.get("acme")).version == 2  # type: ignore[union-attr]

    # deleting removes the record, its index entries and releases its key pointers
    await records.change("acme", _put(None), channel=channel)
    assert await records.get("acme") is None
    assert await records.count() == 0 and await records.count("free") == 0
    assert await records.owner_of_key(SHA_A) is None


async def test_concurrent_changes_of_one_customer_lose_nothing(
    redis: Redis, key_prefix: str
) -> None:
    records = _records(redis, key_prefix)
    channel = f"{key_prefix}:invalidate"
    await records.change("acme", _put(_doc("pro", n=0)), channel=channel)

    def bump(before: CustomerRecord | None) -> RecordChange[None]:
        assert before is not None
        doc = {**before.doc, "n": int(before.doc["n"]) + 1}
        return RecordChange(None, CustomerRecord("acme", doc, Source.API))

    await asyncio.gather(*(records.change("acme", bump, channel=channel) for _ in range(15)))
    record = await records.get("acme")
    assert record is not None and record.doc["n"] == 15 and record.version == 16


async def test_a_key_hash_belongs_to_one_customer(redis: Redis, key_prefix: str) -> None:
    records = _records(redis, key_prefix)
    channel = f"{key_prefix}:invalidate"
    await records.change("acme", _put(_doc("pro", SHA_A)), channel=channel)
    with pytest.raises(DirectoryConflict):
        await records.change("initech", _put(_doc("pro", SHA_A), "initech"), channel=channel)
    assert await records.get("initech") is None
    assert await records.owner_of_key(SHA_A) == "acme"
    # dropping a key from the record releases its pointer; another customer may then use it
    await records.change("acme", _put(_doc("pro", SHA_B)), channel=channel)
    assert await records.owner_of_key(SHA_A) is None
    assert await records.owner_of_key(SHA_B) == "acme"
    await records.change("initech", _put(_doc("pro", SHA_A), "initech"), channel=channel)
    assert await records.owner_of_key(SHA_A) == "initech"


async def test_a_refused_change_writes_nothing(redis: Redis, key_prefix: str) -> None:
    records = _records(redis, key_prefix)

    def refuse(before: CustomerRecord | None) -> RecordChange[None]:
        raise ValueError("no")

    with pytest.raises(ValueError):
        await records.change("acme", refuse, channel=f"{key_prefix}:invalidate")
    assert [k async for k in redis.scan_iter(match=f"{key_prefix}:*")] == []


async def test_bulk_writes_are_idempotent_with_keep(redis: Redis, key_prefix: str) -> None:
    records = _records(redis, key_prefix)
    channel = f"{key_prefix}:invalidate"
    batch = [
        CustomerRecord(f"c{i:04d}", _doc("pro", f"{i:064x}"), Source.FILE) for i in range(1200)
    ]

    def same(existing: CustomerRecord, new: CustomerRecord) -> bool:
        return existing.doc == new.doc and existing.source == new.source

    assert len(await records.put_many(batch, channel=channel, keep=same)) == 1200
    assert await records.put_many(batch, channel=channel, keep=same) == []
    assert await records.count("pro") == 1200
    assert await records.owner_of_key(f"{7:064x}") == "c0007"
    seen = [record.id async for record in records.scan(chunk=100)]
    assert sorted(seen) == [r.id for r in batch]


async def test_scripts_come_back_after_a_flush(
    redis: Redis, key_prefix: str, redis_target: RedisTarget
) -> None:
    if redis_target.name != "embedded":
        pytest.skip("SCRIPT FLUSH only on the embedded server this suite started")
    records = _records(redis, key_prefix)
    await records.change("acme", _put(_doc("pro")), channel=f"{key_prefix}:invalidate")
    await redis.script_flush()
    await records.change("acme", _put(_doc("free")), channel=f"{key_prefix}:invalidate")
    assert (await records.get("acme")).plan == "free"  # type: ignore[union-attr]


_IDS = st.sets(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,6}", fullmatch=True), max_size=40)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ids=_IDS, limit=st.integers(1, 7))
async def test_pages_walk_every_customer_once_in_id_order(
    redis: Redis, key_prefix: str, ids: set[str], limit: int
) -> None:
    prefix = f"{key_prefix}:{len(ids)}-{limit}-{abs(hash(frozenset(ids))) % 10**9}"
    records = _records(redis, prefix, partitions=5)
    batch = [
        CustomerRecord(c, _doc("pro" if i % 2 else "free"), Source.API)
        for i, c in enumerate(sorted(ids))
    ]
    await records.put_many(batch, channel=f"{prefix}:invalidate")
    for plan, expected in (
        (None, sorted(ids)),
        ("pro", sorted(c.id for c in batch if c.plan == "pro")),
    ):
        walked: list[str] = []
        after = None
        for _ in range(len(ids) + 2):
            page = await records.page(after=after, limit=limit, plan=plan)
            walked += page
            if len(page) < limit:
                break
            after = page[-1]
        assert walked == expected


async def test_a_pointer_left_behind_does_not_block_the_key(redis: Redis, key_prefix: str) -> None:
    records = _records(redis, key_prefix)
    channel = f"{key_prefix}:invalidate"
    await redis.set(records.keys.key_owner(SHA_A), "ghost")  # as a crash mid-change leaves it
    await records.change("acme", _put(_doc("pro", SHA_A)), channel=channel)
    assert await records.owner_of_key(SHA_A) == "acme"


async def test_change_many_recomputes_a_record_changed_in_between_and_refuses_a_held_hash(
    redis: Redis, key_prefix: str
) -> None:
    channel = f"{key_prefix}:invalidate"

    class Racing(CustomerRecords):
        """Another writer adds a key to `acme` right after the bulk read, once."""

        raced = False

        async def get_many(self, customers):  # type: ignore[no-untyped-def]
            found = await super().get_many(customers)
            if not self.raced and "acme" in customers:
                self.raced = True
                await self.change("acme", _put(_doc("pro", SHA_A, SHA_B)), channel=channel)
            return found

    records = Racing(redis=redis, keys=KeySpace(prefix=key_prefix, partitions=4))
    await records.change("acme", _put(_doc("pro", SHA_A)), channel=channel)
    seen: list[int] = []

    def add_description(customer: str, before: CustomerRecord | None) -> RecordChange[str]:
        if before is None:
            return RecordChange("created", CustomerRecord(customer, _doc("free")))
        seen.append(len(before.key_hashes))
        doc = {**before.doc, "description": "bulk"}
        return RecordChange("changed", CustomerRecord(customer, doc))

    results = await records.change_many(["acme", "beta"], add_description, channel=channel)
    assert results == ["changed", "created"]
    assert seen == [1, 2]  # computed again on the record the other writer changed
    acme = await records.get("acme")
    assert acme is not None and acme.key_hashes == (SHA_A, SHA_B) and acme.version == 3

    def steal(customer: str, before: CustomerRecord | None) -> RecordChange[str]:
        return RecordChange("x", CustomerRecord(customer, _doc("pro", SHA_B)))

    with pytest.raises(DirectoryConflict):
        await records.change_many(["gamma", "delta"], steal, channel=channel)
    assert await records.get("gamma") is None and await records.get("delta") is None
