"""Customers blocked now: the open block episodes every partition holds (decide.lua opens one
on the first denial by a quota or a blocking spend cap, or on 10 s of rate-limit refusals; an
admission that lifts it, the window's reset or a quiet spell closes it). What the operator
page shows as "blocked now"."""

from __future__ import annotations

import asyncio
import heapq
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gatekeeper.clock import from_us, to_us
from gatekeeper.errors import StoreUnavailable
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.resp import reply_text
from gatekeeper.store.scripts import LuaScript, load_script

__all__ = ["BlockedEpisode", "BlockedNow", "BlockedReader"]


@dataclass(frozen=True, slots=True)
class BlockedEpisode:
    """A customer refused by one limit until `until` unless it is lifted: the window's end, or
    (rate_limited) when its run of refusals ends if no refusal follows.

    `feature` "" = the spend cap; `limit`: what it blocked at (units, nano-units of money, or
    a rate limit's count per window); `period_start`: the window's start, or the run's first
    refusal."""

    customer: str
    plan: str
    feature: str
    cause: str  # quota_exhausted | spend_cap | rate_limited
    limit: int
    period_start: datetime
    until: datetime


@dataclass(frozen=True, slots=True)
class BlockedNow:
    count: int  # open episodes over every partition (a customer blocked twice counts twice)
    episodes: tuple[BlockedEpisode, ...]  # the first `limit` of them, soonest end first


class BlockedReader:
    """One read-only call per partition (the count and the first `limit` episodes of each)."""

    def __init__(self, *, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys
        self._script: LuaScript = load_script("blocked_now", library=False)

    async def read(self, now: datetime, limit: int) -> BlockedNow:
        """Raises StoreUnavailable when Redis cannot be read."""
        now_us = to_us(now)
        try:
            replies = await asyncio.gather(
                *(
                    self._script.run(self._redis, [self._keys.block_episodes(p)], [now_us, limit])
                    for p in range(self._keys.partitions)
                )
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        count = sum(int(r[0]) for r in replies)
        found = [e for r in replies for e in _episodes(r[1:])]
        first = heapq.nsmallest(limit, found, key=lambda e: (e.until, e.customer, e.feature))
        return BlockedNow(count, tuple(first))


def _episodes(flat: list[object]) -> list[BlockedEpisode]:
    out = []
    for i in range(0, len(flat) - 6, 7):
        customer, plan, feature, cause, limit, start_us, end_us = flat[i : i + 7]
        out.append(
            BlockedEpisode(
                customer=_str(customer),
                plan=_str(plan),
                feature=_str(feature),
                cause=_str(cause),
                limit=_int(limit),
                period_start=from_us(_int(start_us)),
                until=from_us(_int(end_us)),
            )
        )
    return out


def _str(value: object) -> str:
    if isinstance(value, bytes | str):
        return reply_text(value)
    raise ValueError(f"not a string: {value!r}")


def _int(value: object) -> int:
    """An integer reply, or a score (a bulk string of an integer)."""
    if isinstance(value, int | str | bytes):
        return int(value)
    raise ValueError(f"not an integer: {value!r}")
