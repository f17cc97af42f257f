"""What the servers count and keep in check for every connection: refusals by reason (for
/metrics), a per-second budget for frames a client may not flood, and the coarse clock the
connections' timeouts read (one sweep per server, no timer per request)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Protocol

from gatekeeper.net.limits import NetLimits

__all__ = ["Budget", "NetStats", "Refusal", "Sweeper", "Swept"]

log = logging.getLogger(__name__)


class Refusal(StrEnum):
    """Why a server refused a client (the `reason` label of gatekeeper_net_refusals_total)."""

    HEADER_TOO_LARGE = "header_too_large"
    TOO_MANY_HEADERS = "too_many_headers"
    BODY_TOO_LARGE = "body_too_large"
    INFLATED_TOO_LARGE = "inflated_too_large"
    BUFFER_FULL = "buffer_full"
    STREAM_REFUSED = "stream_refused"
    RESET_FLOOD = "reset_flood"
    PING_FLOOD = "ping_flood"
    SETTINGS_FLOOD = "settings_flood"
    HEADER_FLOOD = "header_flood"
    FLOW_CONTROL = "flow_control"
    PROTOCOL_ERROR = "protocol_error"
    HEADER_TIMEOUT = "header_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    TOO_MANY_CONNECTIONS = "too_many_connections"


class NetStats:
    """Counts of one server: what clients made it refuse, by reason."""

    __slots__ = ("refusals",)

    def __init__(self) -> None:
        self.refusals: dict[Refusal, int] = {}

    def refuse(self, reason: Refusal) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1


class Budget:
    """A token bucket: `rate` events per second, bursts of up to `rate`."""

    __slots__ = ("_at", "_rate", "_tokens")

    def __init__(self, rate: int, now: float) -> None:
        self._rate = float(rate)
        self._tokens = float(rate)
        self._at = now

    def spend(self, now: float) -> bool:
        """Take one event at `now` (seconds, monotonic); False: over budget."""
        tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


class Swept(Protocol):
    """A connection the sweeper looks at."""

    def sweep(self, now: float) -> None:
        """Close the connection if it broke a timeout at `now` (seconds, the loop's clock)."""


class Sweeper:
    """The coarse clock of one server (`now`, seconds of the loop's clock, a tick old at most)
    and the task that ticks it, then lets every connection check its timeouts."""

    def __init__(self, limits: NetLimits, connections: Callable[[], Iterable[Swept]]) -> None:
        self.tick_s = max(0.05, min(limits.header_timeout_s, limits.idle_timeout_s) / 4)
        self._connections = connections
        self._task: asyncio.Task[None] | None = None
        self.now = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time()
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_s)
            self.now = loop.time()
            for conn in list(self._connections()):
                try:
                    conn.sweep(self.now)
                except Exception:  # a bug: logged; the other connections are still swept
                    log.exception("sweeping a connection failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
