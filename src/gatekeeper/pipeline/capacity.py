"""A counting bound on entries in flight (read, not yet committed and acknowledged)."""

from __future__ import annotations

import asyncio

__all__ = ["Capacity"]


class Capacity:
    """At most `limit` units reserved at once. `reserve` waits for room; `close` wakes all."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.in_flight = 0
        self._closed = False
        self._changed = asyncio.Condition()

    async def reserve(self, most: int) -> int:
        """Reserve between 1 and `most` units, waiting until one is free; 0 once closed."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or self.in_flight < self.limit)
            if self._closed:
                return 0
            n = min(most, self.limit - self.in_flight)
            self.in_flight += n
            return n

    async def release(self, n: int) -> None:
        """Give back `n` units (never below zero) and wake waiters."""
        if n <= 0:
            return
        async with self._changed:
            self.in_flight = max(0, self.in_flight - n)
            self._changed.notify_all()

    async def close(self) -> None:
        """Wake every waiter; reserve() returns 0 from now on."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
