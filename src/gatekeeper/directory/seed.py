"""The policy file's customers reconciled into the directory at start (and on a file reload).

A file customer becomes a record of source `file`. A record the API changed since (source
`api`) is left as it is: the API's change wins, as it did when it was made; a file customer
the API deleted stays deleted. A file customer removed from the file is removed from the
directory, unless the API changed it. The file's
digest is kept, so a start with the same file writes nothing and reads almost nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from gatekeeper.config.compose import Doc
from gatekeeper.config.loader import collector_paused
from gatekeeper.config.yamlsrc import YMap
from gatekeeper.directory.catalog import seed_documents
from gatekeeper.directory.migrate import migrate_legacy_directory
from gatekeeper.store.customers import (
    CustomerRecord,
    CustomerRecords,
    DirectoryConflict,
    RecordChange,
    Source,
)
from gatekeeper.store.keys import KeySpace

__all__ = ["SeedResult", "reconcile_directory", "seed_customers"]

log = logging.getLogger(__name__)
_CHUNK = 2_000
_LOCK_S = 120  # how long one process may seed before another takes over
_IN_FLIGHT = 4  # chunks written at once


@dataclass(frozen=True, slots=True)
class SeedResult:
    written: int
    removed: int
    skipped: bool  # the same file as last time: nothing to do
    refused: tuple[str, ...] = ()  # customers whose key hash another customer holds


def _digest(docs: Mapping[str, Doc]) -> str:
    text = json.dumps(docs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _unchanged(existing: CustomerRecord, new: CustomerRecord) -> bool:
    """Leave an existing record alone: the API changed it, or it already says this."""
    return existing.source is Source.API or existing.doc == new.doc


async def seed_customers(
    *,
    redis: Redis,
    keys: KeySpace,
    records: CustomerRecords,
    docs: Mapping[str, Doc],
    updated_at: str,
) -> SeedResult:
    """Reconcile the file's customer documents into the directory. Raises redis errors.

    One process at a time (`serve --workers N` starts N at once): the others wait for its
    result (up to `_LOCK_S`; if it died meanwhile, one of them takes over)."""
    digest = _digest(docs)
    marker, lock = keys.directory_seed(), keys.directory_seed_lock()
    token = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * _LOCK_S
    while True:
        if _text(await redis.get(marker)) == digest:
            return SeedResult(0, 0, skipped=True)
        if await redis.set(lock, token, nx=True, ex=_LOCK_S):
            break
        if loop.time() > deadline:
            raise TimeoutError("another process has been seeding the directory for too long")
        await asyncio.sleep(0.2)
    try:
        return await _seed(redis, keys, records, docs, digest, updated_at)
    finally:
        if _text(await redis.get(lock)) == token:
            await redis.delete(lock)


async def _seed(
    redis: Redis,
    keys: KeySpace,
    records: CustomerRecords,
    docs: Mapping[str, Doc],
    digest: str,
    updated_at: str,
) -> SeedResult:
    marker = keys.directory_seed()
    channel = keys.invalidate_channel()
    first = await redis.get(marker) is None  # never seeded: the records are most likely new
    deleted = await records.removed_seeds()  # deleted through the API: not brought back
    batch = [
        CustomerRecord(cid, doc, Source.FILE, updated_at=updated_at)
        for cid, doc in docs.items()
        if cid not in deleted
    ]
    written = 0
    refused: list[str] = []
    starts = iter(range(0, len(batch), _CHUNK))

    async def put(chunk: list[CustomerRecord]) -> None:
        nonlocal written
        done = await records.put_many(chunk, channel=channel, keep=_unchanged, assume_new=first)
        written += len(done)  # after the await (`written += await …` would lose counts)

    async def worker() -> None:
        for start in starts:
            chunk = batch[start : start + _CHUNK]
            try:
                await put(chunk)
            except DirectoryConflict:  # one by one, to name (and leave out) those at fault
                for record in chunk:
                    try:
                        await put([record])
                    except DirectoryConflict as exc:
                        log.error("file customer %s left out of the directory: %s", record.id, exc)
                        refused.append(record.id)

    # chunks of different customers in flight at once: Redis works on one while this process
    # packs the next (a file's customers never share a key hash: the file's parser refuses it)
    await asyncio.gather(*(worker() for _ in range(_IN_FLIGHT)))
    removed = await _remove_dropped(redis, keys, records, set(docs))
    await redis.set(marker, digest)
    return SeedResult(written, removed, skipped=False, refused=tuple(refused))


async def _remove_dropped(
    redis: Redis, keys: KeySpace, records: CustomerRecords, current: set[str]
) -> int:
    """Remove the file customers of the previous seed that the file no longer lists (those the
    API changed since are kept); remember this seed's ids."""
    seeded = keys.directory_seed_ids()
    previous = {_text(x) or "" async for x in redis.sscan_iter(seeded, count=1000)}
    removed = 0
    for customer in sorted(previous - current):

        def drop(before: CustomerRecord | None) -> RecordChange[bool]:
            if before is None or before.source is Source.API:
                return RecordChange(False, before, write=False)
            return RecordChange(True, None)

        if await records.change(customer, drop, channel=keys.invalidate_channel()):
            removed += 1
    ids = sorted(current)
    await redis.delete(seeded)
    for start in range(0, len(ids), _CHUNK):
        await redis.sadd(seeded, *ids[start : start + _CHUNK])
    return removed


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def reconcile_directory(
    *,
    redis: Redis,
    keys: KeySpace,
    records: CustomerRecords,
    root: YMap | None,
    updated_at: str,
) -> SeedResult:
    """What every command that opens the directory for writing does first: the policy file's
    customers reconciled (`seed_customers`), then the customers an older gatekeeper kept in
    whole-directory hashes moved into records (`migrate_legacy_directory`, once)."""
    result = SeedResult(0, 0, skipped=True)
    if root is not None:
        with collector_paused():  # millions of small objects: no collector passes over them
            docs = seed_documents(root)
        result = await seed_customers(
            redis=redis, keys=keys, records=records, docs=docs, updated_at=updated_at
        )
        if not result.skipped:
            log.info(
                "policy file customers reconciled into the directory: %d written, %d removed",
                result.written,
                result.removed,
            )
    await migrate_legacy_directory(redis=redis, keys=keys, records=records, updated_at=updated_at)
    return result
