"""Block episodes that a window's reset ended, announced: one 'resumed' alert each.

A customer refused by a quota or a spend cap got one 'blocked' alert (decide.lua). When the
window resets the block is over, but no request has to come to say so: this loop, in `gatekeeper
worker`, asks each partition every `interval_s` for the episodes whose window has ended
(resume_due.lua: announced and removed in one step, so several workers never announce one
twice), and the notifier delivers the alerts like any other.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from gatekeeper.backoff import Backoff
from gatekeeper.clock import Clock, to_us
from gatekeeper.loop import Periodic
from gatekeeper.pipeline.failures import is_transient
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.scripts import LuaScript, load_script

__all__ = ["ResetAnnouncer"]

log = logging.getLogger(__name__)

BATCH = 100  # episodes per call (a call per partition, again while it finds a full batch)
_RETRY = Backoff(0.5, 30.0)


class ResetAnnouncer(Periodic):
    """`run()` every `interval_s` until `stop()`; `run_once()` announces what is due now."""

    def __init__(
        self, *, redis: Redis, keys: KeySpace, clock: Clock, interval_s: float = 1.0
    ) -> None:
        super().__init__(
            "reset announcer",
            self.run_once,
            every_s=interval_s,
            transient=is_transient,
            backoff=_RETRY,
        )
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._script: LuaScript = load_script("resume_due", library=False)
        self.announced = 0

    async def run_once(self) -> int:
        """Announce every episode whose window ended by now; how many."""
        now_us = to_us(self._clock.now())
        done = 0
        for partition in range(self._keys.partitions):
            keys = [self._keys.block_episodes(partition), self._keys.alert_stream(partition)]
            while True:
                n = int(await self._script.run(self._redis, keys, [now_us, BATCH]))
                done += n
                if n < BATCH:
                    break
        if done:
            self.announced += done
            log.info("block episodes ended by a reset, announced: %d", done)
        return done
