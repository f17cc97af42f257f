"""The small part of the run-time directory in Redis, read whole: plan documents set through
the API and API tokens. (Customers, their keys and webhook endpoints are records of their own,
`store.customers`.)

Every change is one optimistic transaction (WATCH these hashes, read them, compute, MULTI): the
new entries, their audit records and an invalidation message commit together or not at all, and
two concurrent changes never overwrite each other (the loser retries on the fresh state). All
of it lives in one slot (`{ctl}`), also on a Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import WatchError

from gatekeeper.access import TokenRecord
from gatekeeper.config.compose import Doc
from gatekeeper.model import frozen_map
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.resp import reply_text

__all__ = ["INVALIDATE_DIRECTORY", "AuditRecord", "DirectoryState", "DirectoryStore", "Mutation"]

INVALIDATE_DIRECTORY = "directory"  # message on the invalidation channel
_RETRIES = 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    actor: str
    what: str  # e.g. "customer.update", "api_key.create"
    target: str  # e.g. "customer:acme", "plan:pro"
    before: object
    after: object
    at: datetime

    def fields(self) -> dict[str, str]:
        return {
            "what": self.what,
            "target": self.target,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "before": json.dumps(self.before, sort_keys=True),
            "after": json.dumps(self.after, sort_keys=True),
        }


@dataclass(frozen=True, slots=True)
class DirectoryState:
    """Plans and tokens set through the API (plan documents are plain JSON; None = the file's
    plan removed)."""

    plans: Mapping[str, Doc | None] = field(default_factory=frozen_map)
    tokens: Mapping[str, TokenRecord] = field(default_factory=frozen_map)  # by sha256


@dataclass(frozen=True, slots=True)
class Mutation(Generic[T]):
    """What one change writes, and what it answers the caller."""

    result: T
    plans: Mapping[str, Doc | None] = field(default_factory=frozen_map)
    tokens: Mapping[str, TokenRecord] = field(default_factory=frozen_map)
    audit: tuple[AuditRecord, ...] = ()


# PUBLISH inside a Cluster transaction: KEYS[1] only places the call in the {ctl} slot
_PUBLISH = "return redis.call('PUBLISH', ARGV[1], ARGV[2])"


def _docs(raw: Mapping[Any, Any]) -> dict[str, Doc | None]:
    return {reply_text(k): json.loads(reply_text(v)) for k, v in raw.items()}


class DirectoryStore:
    def __init__(self, *, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys
        self._watched = (keys.directory_plans(), keys.api_tokens())

    async def load(self) -> DirectoryState:
        """Plans and tokens. Raises redis errors."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._watched:
                pipe.hgetall(key)
            plans, tokens = await pipe.execute()
        return self._state(plans, tokens)

    @staticmethod
    def _state(plans: Mapping[Any, Any], tokens: Mapping[Any, Any]) -> DirectoryState:
        return DirectoryState(
            plans=frozen_map(_docs(plans)),
            tokens=frozen_map(
                {reply_text(k): TokenRecord.from_json(reply_text(v)) for k, v in tokens.items()}
            ),
        )

    async def change(
        self, compute: Callable[[DirectoryState], Mutation[T] | Awaitable[Mutation[T]]]
    ) -> T:
        """Apply `compute(current state)` atomically; it may raise to refuse (nothing written).

        Retries when another process changed the directory in between. Raises redis errors.
        """
        plans_key, tokens_key = self._watched
        for _ in range(_RETRIES):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*self._watched)
                    state = self._state(
                        await pipe.hgetall(plans_key), await pipe.hgetall(tokens_key)
                    )
                    mutation = compute(state)
                    if not isinstance(mutation, Mutation):
                        mutation = await mutation
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for name, doc in mutation.plans.items():
                        pipe.hset(plans_key, name, json.dumps(doc, sort_keys=True))
                    for digest, token in mutation.tokens.items():
                        pipe.hset(tokens_key, digest, token.to_json())
                    for record in mutation.audit:
                        pipe.xadd(self._keys.audit_stream(), record.fields())  # type: ignore[arg-type]
                    channel = self._keys.invalidate_channel()
                    if isinstance(self._redis, RedisCluster):
                        # a Cluster transaction takes only commands with a key of its slot:
                        # the same PUBLISH from a script keyed by the {ctl} slot
                        pipe.eval(_PUBLISH, 1, plans_key, channel, INVALIDATE_DIRECTORY)
                    else:
                        pipe.publish(channel, INVALIDATE_DIRECTORY)
                    await pipe.execute()
                    return mutation.result
                except WatchError:
                    continue
        raise RuntimeError("directory changed concurrently too often; try again")

    async def audit(
        self, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        """Audit records, newest first, older than the entry id `after` when given: the
        catalog's and tokens' stream merged with every partition's customer stream (entry ids
        are times, so they order across streams). O(partitions × limit)."""
        high = "+" if after is None else f"({after}"
        streams = [
            self._keys.audit_stream(),
            *(self._keys.directory_audit(p) for p in range(self._keys.partitions)),
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xrevrange(stream, high, "-", count=limit)
            replies: Any = await pipe.execute()
        rows = [
            (reply_text(entry_id), {reply_text(k): reply_text(v) for k, v in fields.items()})
            for reply in replies
            for entry_id, fields in reply
        ]
        rows.sort(key=lambda row: _entry_order(row[0]), reverse=True)
        return rows[:limit]


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
