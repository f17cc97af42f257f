"""Keeping a process's directory cache true: the invalidation channel, applied.

`customer:<id>` drops that customer; any other message goes to `on_other` (plans, tokens,
webhooks or the policy file changed). A lost connection is retried with backoff; when it is
back, everything held is forgotten (messages published meanwhile are lost) and `on_other` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gatekeeper.backoff import Backoff
from gatekeeper.directory.live import LiveDirectory
from gatekeeper.loop import LoopState, run_loop, transient_types

__all__ = ["CUSTOMER_PREFIX", "InvalidationLoop", "listen_invalidations"]

log = logging.getLogger(__name__)
CUSTOMER_PREFIX = b"customer:"


async def listen_invalidations(
    *,
    redis: Redis,
    channel: str,
    directory: LiveDirectory,
    on_other: Callable[[bytes], Awaitable[None]],
    max_delay_s: float = 5.0,
    stopping: asyncio.Event | None = None,
) -> None:
    """Runs until `stopping` is set (or cancelled: a subscription only ends by a stop that
    cancels it); raises only what it cannot survive (a bug in `on_other`)."""
    state = LoopState()

    async def subscribed() -> None:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            if state.failures:  # back after an outage: catch up on what we missed
                directory.clear()
                await on_other(b"")
                log.info("invalidation listener reconnected")
            state.failures = 0  # connected: the next outage starts its backoff afresh
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                data = bytes(message.get("data") or b"")
                if data.startswith(CUSTOMER_PREFIX):
                    directory.invalidate(data[len(CUSTOMER_PREFIX) :].decode(errors="replace"))
                else:
                    await on_other(data)
        finally:
            # bounded: a close that waits on a dead connection must not hold up a stop
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), 2.0)  # type: ignore[no-untyped-call,unused-ignore]

    await run_loop(
        "invalidation listener",
        subscribed,
        stopping=stopping if stopping is not None else asyncio.Event(),
        transient=transient_types(RedisConnectionError, RedisTimeoutError, OSError),
        backoff=Backoff(0.1, max_delay_s),
        state=state,
        abandon_on_stop=True,
    )


class InvalidationLoop:
    """`listen_invalidations` as a loop with `run()` and `stop()` (the worker's commands)."""

    def __init__(
        self,
        *,
        redis: Redis,
        channel: str,
        directory: LiveDirectory,
        on_other: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self._args = (redis, channel, directory, on_other)
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        redis, channel, directory, on_other = self._args
        await listen_invalidations(
            redis=redis,
            channel=channel,
            directory=directory,
            on_other=on_other,
            stopping=self._stopped,
        )

    def stop(self) -> None:
        self._stopped.set()
