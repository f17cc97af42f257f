"""Customers set through the API by a gatekeeper from before the directory had records.

Those lived as whole documents in one hash (`{ctl}:dir:customers`, "null" = a file customer
removed), own spend caps in another (`{ctl}:overrides:spend_cap`) and customers' webhook
endpoints in a third (`{ctl}:dir:webhooks`). At start they become
records, once, after the file's customers were reconciled (so a cap or a removal applies to
the right record); the old hashes are then renamed `…:migrated` (kept, never read again).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from gatekeeper.money import format_nano
from gatekeeper.store.customers import CustomerRecord, CustomerRecords, RecordChange, Source
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.resp import reply_text

__all__ = ["migrate_legacy_directory"]

log = logging.getLogger(__name__)


def _cap_document(raw: Any) -> dict[str, str] | None:
    if not isinstance(raw, dict) or raw.get("amount_nano") is None:
        return None
    doc = {"amount": format_nano(int(raw["amount_nano"]))}
    if raw.get("action"):
        doc["action"] = str(raw["action"])
    return doc


def _merge(
    customer: str, doc: Any, cap: Any, hooks: Any, updated_at: str
) -> Callable[[CustomerRecord | None], RecordChange[bool]]:
    """The change that moves one old entry: `doc` None = the API had removed this (file)
    customer; `...` = no old document, only a cap set on the record seeded from the file."""
    own_cap = _cap_document(cap)

    def compute(before: CustomerRecord | None) -> RecordChange[bool]:
        if doc is None:
            return RecordChange(True, None) if before else RecordChange(False, None, write=False)
        if doc is ...:
            if before is None:
                return RecordChange(False, None, write=False)
            new = dict(before.doc)
        else:
            new = dict(doc)
        if own_cap is not None:
            new["spend_cap"] = own_cap
        webhooks = tuple(hooks) if isinstance(hooks, list) else (before.webhooks if before else ())
        record = CustomerRecord(customer, new, Source.API, updated_at=updated_at, webhooks=webhooks)
        return RecordChange(True, record)

    return compute


async def migrate_legacy_directory(
    *, redis: Redis, keys: KeySpace, records: CustomerRecords, updated_at: str
) -> int:
    """Move the old hashes' customers and caps into records; returns how many customers were
    written. A no-op once done. Raises redis errors."""
    old = (keys.directory_customers(), keys.spend_cap_overrides(), keys.customer_webhooks())
    if not await redis.exists(*old):
        return 0
    docs, caps, hooks = [
        {reply_text(k): json.loads(reply_text(v)) for k, v in (await redis.hgetall(key)).items()}
        for key in old
    ]
    channel = keys.invalidate_channel()
    moved = 0
    for customer in sorted(set(docs) | set(caps) | set(hooks)):
        compute = _merge(
            customer, docs.get(customer, ...), caps.get(customer), hooks.get(customer), updated_at
        )
        written: bool = await records.change(customer, compute, channel=channel)
        moved += written
    for key in old:
        if await redis.exists(key):
            await redis.rename(key, key + ":migrated")
    log.info("moved %d customers of the old directory hashes into records", moved)
    return moved
