"""The customer directory in Redis: one record per customer, built for millions of them.

Each customer is one record in its own hash slot (`KeySpace.customer_record`), beside its
partition's indexes (ids in order, ids per plan) and audit stream: a change to one customer
is one compare-and-set Lua call on one slot (`directory_put.lua`), also on a Cluster, and
touches O(1) keys whatever the number of customers. API keys are found by hash through a
pointer (`KeySpace.key_owner`, hash → customer id); the customer's record alone says whether a
key is live, so a pointer left behind grants nothing, and revoking a key changes one record.

Nothing here validates a document (the directory service does, with the policy file's own
parser, one customer at a time); nothing here reads more than the records it is asked for.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis

from gatekeeper.store.batch import Call, is_error, raise_errors, run_batch
from gatekeeper.store.directory import AuditRecord
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.resp import reply_text
from gatekeeper.store.scripts import load_script

__all__ = [
    "BULK_CHUNK",
    "CustomerRecord",
    "CustomerRecords",
    "DirectoryConflict",
    "RecordChange",
    "Source",
    "invalidation_message",
]

T = TypeVar("T")
_RETRIES = 20
_CHUNK = 500  # records per pipelined round trip on the bulk paths
BULK_CHUNK = _CHUNK


class Source(StrEnum):
    FILE = "file"  # a seed customer of the policy file
    API = "api"  # created or changed through the API, the CLI or an import


class DirectoryConflict(Exception):
    """A change that cannot be made as asked (a key hash owned by another customer, a record
    changed concurrently too often)."""


def invalidation_message(customer: str) -> str:
    """What every process hears on the invalidation channel when `customer` changed."""
    return f"customer:{customer}"


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A customer as the directory stores it.

    `doc` is the customer in the policy file's own shape (plan, billing_day, overrides, grants,
    spend_cap, api_keys, description) as plain JSON data; `version` grows by one per change.
    """

    id: str
    doc: Mapping[str, Any]
    source: Source = Source.API
    version: int = 0  # 0 = not stored yet
    updated_at: str = ""  # ISO 8601, UTC
    webhooks: tuple[Mapping[str, Any], ...] = ()

    @property
    def plan(self) -> str:
        return str(self.doc.get("plan", ""))

    @property
    def key_hashes(self) -> tuple[str, ...]:
        keys = self.doc.get("api_keys") or ()
        return tuple(str(k["sha256"]) for k in keys if isinstance(k, Mapping) and "sha256" in k)

    def to_json(self) -> str:
        return json.dumps(
            {
                "doc": self.doc,
                "source": self.source.value,
                "updated_at": self.updated_at,
                "webhooks": list(self.webhooks),
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, customer: str, version: int, raw: str | bytes) -> CustomerRecord:
        data = json.loads(raw)
        return cls(
            id=customer,
            doc=data["doc"],
            source=Source(data.get("source", Source.API.value)),
            version=version,
            updated_at=data.get("updated_at", ""),
            webhooks=tuple(data.get("webhooks") or ()),
        )


@dataclass(frozen=True, slots=True)
class RecordChange(Generic[T]):
    """What one change writes (`record` None = delete) and answers its caller."""

    result: T
    record: CustomerRecord | None
    audit: AuditRecord | None = None
    write: bool = True  # False: answer `result` and write nothing


@dataclass(slots=True)
class _Put:
    before: CustomerRecord | None
    after: CustomerRecord | None
    audit: AuditRecord | None = None
    new_hashes: tuple[str, ...] = field(default=())


class CustomerRecords:
    """Reads and writes customer records; every method raises redis errors as they come."""

    def __init__(self, *, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys
        self._put_script = load_script("directory_put")

    @property
    def keys(self) -> KeySpace:
        return self._keys

    # ---- reads ---------------------------------------------------------------------------
    async def get(self, customer: str) -> CustomerRecord | None:
        stored = await self.get_stored(customer)
        return None if stored is None else CustomerRecord.from_json(customer, *stored)

    async def get_stored(self, customer: str) -> tuple[int, bytes] | None:
        """The customer's record as stored: (version, its JSON), None if there is none."""
        row: Any = await self._redis.hmget(self._keys.customer_record(customer), ["v", "r"])
        version, raw = row
        if raw is None:
            return None
        return int(version), raw if isinstance(raw, bytes) else str(raw).encode()

    async def get_many(self, customers: Sequence[str]) -> dict[str, CustomerRecord]:
        """The records of `customers` that exist (one pipelined round trip)."""
        if not customers:
            return {}
        keys = [self._keys.customer_record(c) for c in customers]
        rows = await run_batch(self._redis, [(("HMGET", key, "v", "r"), key) for key in keys])
        raise_errors(rows)
        return {
            c: CustomerRecord.from_json(c, int(v), r)
            for c, (v, r) in zip(customers, rows, strict=True)
            if r is not None
        }

    async def owner_of_key(self, sha256_hex: str) -> str | None:
        """The customer a key hash points to (its record says whether the key is live)."""
        raw = await self._redis.get(self._keys.key_owner(sha256_hex))
        return None if raw is None else reply_text(raw)

    async def page(self, *, after: str | None, limit: int, plan: str | None = None) -> list[str]:
        """Customer ids in id order after `after` (a cursor: the last id of the previous page),
        at most `limit`, optionally only those on `plan`. O(partitions × limit)."""
        low = "-" if after is None else f"({after}"
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition in range(self._keys.partitions):
                index = (
                    self._keys.customer_index(partition)
                    if plan is None
                    else self._keys.plan_members(partition, plan)
                )
                pipe.zrangebylex(index, low, "+", start=0, num=limit)
            rows = await pipe.execute()
        merged = heapq.merge(*([reply_text(x) for x in row] for row in rows))
        return [customer for customer, _ in zip(merged, range(limit), strict=False)]

    async def count(self, plan: str | None = None) -> int:
        """How many customers (on `plan`): one ZCARD per partition."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition in range(self._keys.partitions):
                pipe.zcard(
                    self._keys.customer_index(partition)
                    if plan is None
                    else self._keys.plan_members(partition, plan)
                )
            counts = await pipe.execute()
        return sum(int(n) for n in counts)

    async def id_chunks(self, *, chunk: int = _CHUNK) -> AsyncIterator[list[str]]:
        """Every customer id, `chunk` at a time, partition by partition in id order."""
        for partition in range(self._keys.partitions):
            low = "-"
            while True:
                ids = [
                    reply_text(x)
                    for x in await self._redis.zrangebylex(
                        self._keys.customer_index(partition), low, "+", start=0, num=chunk
                    )
                ]
                if not ids:
                    break
                yield ids
                low = f"({ids[-1]}"

    async def scan(self, *, chunk: int = _CHUNK) -> AsyncIterator[CustomerRecord]:
        """Every record, partition by partition in id order (export, backup)."""
        async for ids in self.id_chunks(chunk=chunk):
            records = await self.get_many(ids)
            for customer in ids:
                if customer in records:
                    yield records[customer]

    # ---- seed customers deleted through the API -------------------------------------------
    async def forget_seed(self, customer: str, removed: bool) -> None:
        """`removed` True: the policy file's seed must not bring `customer` back; False: it may
        again (the id was created through the API)."""
        key = self._keys.directory_seed_removed()
        await (self._redis.sadd(key, customer) if removed else self._redis.srem(key, customer))

    async def removed_seeds(self) -> set[str]:
        """Ids of file customers deleted through the API (as many as were deleted)."""
        key = self._keys.directory_seed_removed()
        return {reply_text(x) async for x in self._redis.sscan_iter(key, count=1000)}

    # ---- writes --------------------------------------------------------------------------
    async def change(
        self,
        customer: str,
        compute: Callable[[CustomerRecord | None], RecordChange[T]],
        *,
        channel: str,
    ) -> T:
        """Apply `compute(the current record, or None)` as one compare-and-set.

        `compute` may raise to refuse (nothing is written); it runs again on the fresh record
        when another process changed the customer in between. New key hashes are claimed
        before the record is written (DirectoryConflict when one belongs to another customer);
        hashes the change drops are released after it.
        """
        for _ in range(_RETRIES):
            before = await self.get(customer)
            outcome = compute(before)
            if not outcome.write:
                return outcome.result
            put = _Put(before, outcome.record, outcome.audit)
            written = await self._write([put], channel=channel)
            if written[0]:
                return outcome.result
        raise DirectoryConflict(f"customer {customer!r} changed concurrently too often")

    async def change_many(
        self,
        customers: Sequence[str],
        compute: Callable[[str, CustomerRecord | None], RecordChange[T]],
        *,
        channel: str,
    ) -> list[T]:
        """`change` for many distinct customers (import): per chunk of `BULK_CHUNK`, one read,
        one claim of the new key hashes and one pipelined round of compare-and-sets; those
        changed concurrently are read and computed again. Returns the results in order.

        `compute(customer, its record or None)` should not raise (answer `write=False` to
        refuse one customer). Raises DirectoryConflict when a new key hash is another
        customer's: nothing of that chunk is written (earlier chunks are).
        """
        results: list[T] = []
        for start in range(0, len(customers), _CHUNK):
            chunk = customers[start : start + _CHUNK]
            done: dict[str, T] = {}
            pending = list(chunk)
            for _ in range(_RETRIES):
                current = await self.get_many(pending)
                puts: list[_Put] = []
                answers: list[tuple[str, T]] = []
                for customer in pending:
                    outcome = compute(customer, current.get(customer))
                    if outcome.write:
                        puts.append(_Put(current.get(customer), outcome.record, outcome.audit))
                        answers.append((customer, outcome.result))
                    else:
                        done[customer] = outcome.result
                written = await self._write(puts, channel=channel)
                done.update(answer for answer, ok in zip(answers, written, strict=True) if ok)
                pending = [c for (c, _), ok in zip(answers, written, strict=True) if not ok]
                if not pending:
                    break
            if pending:
                raise DirectoryConflict("records changed concurrently too often")
            results += [done[customer] for customer in chunk]
        return results

    async def put_many(
        self,
        records: Sequence[CustomerRecord],
        *,
        channel: str,
        keep: Callable[[CustomerRecord, CustomerRecord], bool] | None = None,
        audit: Callable[[CustomerRecord | None, CustomerRecord], AuditRecord | None] | None = None,
        assume_new: bool = False,
    ) -> list[CustomerRecord]:
        """Write many records (import, seed), a few hundred per round trip; returns those
        written. `keep(existing, new)` True leaves an existing record as it is (re-running an
        import writes nothing twice). A record changed concurrently is read and decided again.
        `assume_new`: first try each as a new record without reading it (a first seed into an
        empty directory: a third fewer commands); one that exists fails its compare-and-set
        and is then read and decided like any other.
        """
        written: list[CustomerRecord] = []
        for start in range(0, len(records), _CHUNK):
            pending = list(records[start : start + _CHUNK])
            for attempt in range(_RETRIES):
                if not pending:
                    break
                current = (
                    {}
                    if assume_new and attempt == 0
                    else await self.get_many([r.id for r in pending])
                )
                puts = []
                for record in pending:
                    before = current.get(record.id)
                    if before is not None and keep is not None and keep(before, record):
                        continue
                    note = audit(before, record) if audit is not None else None
                    puts.append(_Put(before, record, note))
                done = await self._write(puts, channel=channel)
                written += [p.after for p, ok in zip(puts, done, strict=True) if ok and p.after]
                retry = {p.after.id for p, ok in zip(puts, done, strict=True) if not ok and p.after}
                pending = [r for r in pending if r.id in retry]
            else:
                raise DirectoryConflict("records changed concurrently too often")
        return written

    async def _write(self, puts: Sequence[_Put], *, channel: str) -> list[bool]:
        """Claim new key hashes, then one pipelined compare-and-set per record, then release
        the hashes each record dropped. Returns, per put, whether it was written."""
        if not puts:
            return []
        claims: list[tuple[str, str]] = []
        for put in puts:
            old = set(put.before.key_hashes) if put.before else set()
            new = put.after.key_hashes if put.after else ()
            put.new_hashes = tuple(h for h in new if h not in old)
            claims += [(h, (put.after or put.before).id) for h in put.new_hashes]  # type: ignore[union-attr]
        await self._claim(claims)
        replies: list[Any] = [None] * len(puts)
        todo = list(range(len(puts)))
        for _ in range(2):  # a second time only for calls that met NOSCRIPT (flush, failover)
            got = await run_batch(self._redis, [self._put_call(puts[i], channel) for i in todo])
            for index, reply in zip(todo, got, strict=True):
                replies[index] = reply
            todo = [i for i in todo if is_error(replies[i], "NOSCRIPT")]
            if not todo:
                break
            await self._redis.script_load(self._put_script.source)
        raise_errors(replies)
        done = [int(reply) >= 0 for reply in replies]
        released = [
            h
            for put, ok in zip(puts, done, strict=True)
            if ok and put.before is not None
            for h in set(put.before.key_hashes) - set(put.after.key_hashes if put.after else ())
        ]
        if released:
            await self._redis.delete(*[self._keys.key_owner(h) for h in released])
        return done

    async def _claim(self, claims: Sequence[tuple[str, str]]) -> None:
        """Point each new key hash at its customer; a hash another customer's record lists is
        refused (nothing of this batch is written then; hashes claimed for it point to customers
        that do not list them, which grants nothing), a pointer whose customer no longer lists
        the hash is taken over."""
        if not claims:
            return
        calls: list[Call] = []
        for digest, customer in claims:
            key = self._keys.key_owner(digest)
            calls.append((("SET", key, customer, "NX"), key))
        claimed = await run_batch(self._redis, calls)
        raise_errors(claimed)
        taken = [claim for claim, ok in zip(claims, claimed, strict=True) if ok is None]
        if not taken:  # every hash was free (the usual case): one command per hash
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest, _ in taken:
                pipe.get(self._keys.key_owner(digest))
            owners = await pipe.execute()
        for (digest, customer), owner in zip(taken, owners, strict=True):
            holder = None if owner is None else reply_text(owner)
            if holder == customer:
                continue
            held = None if holder is None else await self.get(holder)
            if held is not None and digest in held.key_hashes:
                raise DirectoryConflict(
                    f"an API key with hash {digest[:12]}… is another customer's"
                )
            # released meanwhile, or left behind (its customer no longer lists the key): ours
            await self._redis.set(self._keys.key_owner(digest), customer)

    def _put_call(self, put: _Put, channel: str) -> Call:
        """The compare-and-set of one record (directory_put.lua), in the customer's slot."""
        record = put.after or put.before
        assert record is not None
        customer = record.id
        partition = self._keys.partition(customer)
        old_plan = put.before.plan if put.before else (put.after.plan if put.after else "")
        new_plan = put.after.plan if put.after else old_plan
        audit_fields = list(put.audit.fields().items()) if put.audit else []
        after = "" if put.after is None else put.after.to_json()  # the version lives beside it
        keys = [
            self._keys.customer_record(customer),
            self._keys.customer_index(partition),
            self._keys.directory_audit(partition),
            self._keys.plan_members(partition, old_plan),
            self._keys.plan_members(partition, new_plan),
        ]
        args: list[str | int] = [
            put.before.version if put.before else 0,
            after,
            customer,
            channel,
            invalidation_message(customer),
            len(audit_fields),
            *[item for pair in audit_fields for item in pair],
        ]
        return (("EVALSHA", self._put_script.sha, len(keys), *keys, *args), keys[0])

    async def audit(self, partition: int, *, after: str | None, limit: int) -> list[Any]:
        high = "+" if after is None else f"({after}"
        rows: Any = await self._redis.xrevrange(
            self._keys.directory_audit(partition), high, "-", count=limit
        )
        return list(rows)
