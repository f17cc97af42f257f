"""Shared material of the directory tests: the demo catalog, customer lines, a records store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from redis.asyncio import Redis

from gatekeeper.clock import ManualClock
from gatekeeper.config import load_config
from gatekeeper.model import Policy
from gatekeeper.store.customers import CustomerRecords
from gatekeeper.store.keys import KeySpace

PARTITIONS = 4
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def catalog() -> Policy:
    """The packaged demo policy's catalog: plans free and pro, features chat_requests,
    llm_tokens, api_access, model_tier."""
    return load_config(None, env={}).policy


def records(redis: Redis, prefix: str) -> CustomerRecords:
    return CustomerRecords(redis=redis, keys=KeySpace(prefix=prefix, partitions=PARTITIONS))


def clock() -> ManualClock:
    return ManualClock(NOW)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def jsonl(lines: Iterable[Mapping[str, object] | str]) -> bytes:
    """A JSON Lines file: mappings dumped, strings taken as they are (a planted bad line)."""
    out = [x if isinstance(x, str) else json.dumps(x) for x in lines]
    return ("\n".join(out) + "\n").encode()
