"""When each API key was last used: kept coarsely (to the minute by default), off the hot path.

A decision only notes the key in memory, at most once per interval per key (a dict lookup);
a background loop writes the notes to Redis every interval, one hash per customer in the
customer's slot (`KeySpace.key_last_used`). What a process notes is bounded by `capacity`
keys: past it, the notes start over (a key used again is noted again).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gatekeeper.backoff import Backoff
from gatekeeper.clock import Clock
from gatekeeper.loop import run_loop, transient_types
from gatekeeper.store.batch import Call, raise_errors, run_batch
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.resp import reply_text

__all__ = ["KeyUsage"]

log = logging.getLogger(__name__)
_CHUNK = 200  # notes per round trip: a few ms of this process's loop at most (a flush can
# hold 100,000 of them: one key each of the customers served in the last interval)


class KeyUsage:
    def __init__(
        self,
        *,
        redis: Redis,
        keys: KeySpace,
        clock: Clock,
        interval_s: float = 60.0,
        capacity: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._interval = interval_s
        self._monotonic = monotonic
        # "<customer>\0<key id>" (atoms only: a dict of them is never tracked by the cyclic
        # collector, however many it holds) -> when noted (monotonic) / epoch seconds to write
        self._noted: dict[str, float] = {}
        self._pending: dict[str, int] = {}
        self._capacity = capacity

    def touch(self, customer: str, key_id: str) -> None:
        """The key was used now (cheap; at most one note per key per interval)."""
        key = f"{customer}\0{key_id}"
        now = self._monotonic()
        noted = self._noted.get(key)
        if noted is not None and now - noted < self._interval:
            return
        if len(self._noted) >= self._capacity:  # rare: start over (keys are noted again)
            self._noted.clear()
        self._noted[key] = now
        if len(self._pending) < self._capacity:
            self._pending[key] = int(self._clock.now().timestamp())

    async def flush(self) -> int:
        """Write the notes taken since the last flush; returns how many. Raises redis errors
        (the notes are kept for the next flush)."""
        pending, self._pending = self._pending, {}
        notes = iter(pending.items())  # a chunk at a time: never one long step of the loop
        try:
            while chunk := list(itertools.islice(notes, _CHUNK)):
                calls: list[Call] = []
                for key, at in chunk:
                    customer, _, key_id = key.partition("\0")
                    hash_key = self._keys.key_last_used(customer)
                    calls.append((("HSET", hash_key, key_id, at), hash_key))
                raise_errors(await run_batch(self._redis, calls))
        except Exception:
            for key, at in pending.items():
                self._pending.setdefault(key, at)
            raise
        return len(pending)

    async def run(self) -> None:
        """Flush every interval until cancelled; a Redis failure is logged and retried (what
        was not written is kept for the next flush)."""
        await run_loop(
            "key last-used flush",
            self.flush,
            stopping=asyncio.Event(),  # the owner cancels it, then flushes once more itself
            transient=transient_types(RedisError, OSError),
            backoff=Backoff(self._interval, 4 * self._interval),
            every_s=self._interval,
        )

    async def last_used(self, customer: str) -> dict[str, int]:
        """Key id -> last use (epoch seconds) as stored. Raises redis errors."""
        raw = await self._redis.hgetall(self._keys.key_last_used(customer))
        return {reply_text(k): int(v) for k, v in raw.items()}
