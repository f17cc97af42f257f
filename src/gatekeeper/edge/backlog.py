"""Fail-open: requests admitted while the store was down, recorded once it is back.

Bounded: when the backlog is full the edge stops admitting offline (answers fail-closed)
rather than admit usage it could not record. Held in memory: a process that dies during an
outage loses its backlog (documented limit of fail-open mode).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from gatekeeper.engine import DecisionEngine, DecisionRequest
from gatekeeper.errors import StoreUnavailable

__all__ = ["OfflineBacklog", "OfflineDecision"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OfflineDecision:
    request: DecisionRequest
    at: datetime
    decision_id: str


class OfflineBacklog:
    def __init__(
        self, engine: DecisionEngine, *, limit: int = 100_000, retry_s: float = 0.5
    ) -> None:
        self._engine = engine
        self._limit = limit
        self._retry_s = retry_s
        self._items: deque[OfflineDecision] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self.recorded = 0
        self.failures = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: OfflineDecision) -> bool:
        """Queue an offline admission; False when full (the caller must not admit)."""
        if len(self._items) >= self._limit:
            return False
        self._items.append(item)
        self._wake.set()
        return True

    async def run_once(self) -> int:
        """Record queued admissions in order until the queue is empty or the store fails."""
        done = 0
        while self._items:
            item = self._items[0]
            try:
                await self._engine.decide(
                    item.request, force=True, at=item.at, decision_id=item.decision_id
                )
            except StoreUnavailable:
                self.failures += 1
                return done
            self._items.popleft()
            self._engine.recorded(item.decision_id)
            done += 1
            self.recorded += 1
        return done

    async def run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._items and not self._stopping:
                await self.run_once()
                if self._items:
                    await asyncio.sleep(self._retry_s)
            if self.recorded:
                log.info("offline backlog recorded=%d pending=%d", self.recorded, len(self._items))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
