"""Per-process decision counters (the hot path) and the loop that flushes them to Redis."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gatekeeper.clock import Clock
from gatekeeper.store.keys import KeySpace

__all__ = [
    "ALLOWED_CLASSES",
    "DENIALS_TTL_S",
    "OUTCOME_CLASSES",
    "DecisionStats",
    "StatsFlusher",
    "outcome_class",
]

log = logging.getLogger(__name__)

DENIALS_TTL_S = 2 * 86_400  # a day's denials by reason: kept through the next day

# Answer.outcome codes (engine Outcome values and the edge's own) -> the dashboard's classes.
_CLASS_OF = {
    "allowed": "allowed",
    "allowed_offline": "allowed_offline",
    "quota_exhausted": "quota",
    "rate_limited": "rate",
    "spend_cap": "spend_cap",
    "not_entitled": "not_entitled",
    "unknown_customer": "unauthenticated",
    "missing_credentials": "unauthenticated",
    "invalid_credentials": "unauthenticated",
    "bad_request": "bad_request",
    "store_unavailable": "unavailable",
}
OUTCOME_CLASSES = (
    "allowed",
    "allowed_offline",
    "quota",
    "rate",
    "spend_cap",
    "not_entitled",
    "unauthenticated",
    "bad_request",
    "unavailable",
    "other",
)
ALLOWED_CLASSES = frozenset({"allowed", "allowed_offline"})
_ALLOWED_OUTCOMES = frozenset({"allowed", "allowed_offline"})


def outcome_class(outcome: str) -> str:
    """The dashboard class of an outcome code; unknown codes are "other"."""
    return _CLASS_OF.get(outcome, "other")


class DecisionStats:
    """Per-process counters the authorizer bumps once per decision (O(1), no I/O)."""

    __slots__ = ("_customers", "_denied", "_outcomes", "_reasons")

    def __init__(self) -> None:
        self._outcomes: dict[str, int] = {}
        self._customers: dict[str, int] = {}
        self._denied: dict[str, int] = {}
        self._reasons: dict[tuple[str, str], int] = {}

    def record(self, outcome: str, customer: str | None) -> None:
        """Count one decision; `customer` is None when the caller was not identified."""
        self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1
        if customer:
            self._customers[customer] = self._customers.get(customer, 0) + 1
            if outcome not in _ALLOWED_OUTCOMES:
                self._denied[customer] = self._denied.get(customer, 0) + 1
                reason = (customer, _CLASS_OF.get(outcome, "other"))
                self._reasons[reason] = self._reasons.get(reason, 0) + 1

    def take_denials(self) -> dict[tuple[str, str], int]:
        """Denials since the last take, by (customer, reason class): every customer denied,
        not only the busiest (a second's worth: bounded by the decisions of a second)."""
        taken, self._reasons = self._reasons, {}
        return taken

    def take(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Counts since the last take (outcomes, decisions per customer, denials per customer)."""
        taken = (self._outcomes, self._customers, self._denied)
        self._outcomes, self._customers, self._denied = {}, {}, {}
        return taken


class StatsFlusher:
    """Adds the process's counts to the per-second hash in Redis, once a second."""

    def __init__(
        self,
        *,
        stats: DecisionStats,
        redis: Redis,
        keys: KeySpace,
        clock: Clock,
        ttl_s: int = 300,
        top_customers: int = 50,
    ) -> None:
        self._stats = stats
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._ttl_s = ttl_s
        self._top = top_customers
        self._stop = asyncio.Event()
        self.flushed = 0  # seconds written
        self.dropped = 0  # decisions lost to Redis errors

    async def run_once(self, second: int | None = None) -> int:
        """Write the counts taken now into the hash of `second` (default: the second that just
        ended by the clock). Returns how many decisions were written. Raises nothing for Redis
        errors (logged, counted in `dropped`)."""
        outcomes, customers, denied = self._stats.take()
        reasons = self._stats.take_denials()
        total = sum(outcomes.values())
        if not total:
            return 0
        if second is None:
            second = int(self._clock.now().timestamp()) - 1
        key = self._keys.stats_second(second)
        day = datetime.fromtimestamp(second, UTC).date().isoformat()
        busiest = heapq.nlargest(self._top, customers.items(), key=lambda kv: kv[1])
        pipe = self._redis.pipeline(transaction=False)
        for outcome, n in outcomes.items():
            pipe.hincrby(key, f"o:{outcome}", n)
        for customer, n in busiest:
            pipe.hincrby(key, f"c:{customer}", n)
            if denied.get(customer):
                pipe.hincrby(key, f"d:{customer}", denied[customer])
        pipe.expire(key, self._ttl_s)
        expiring: set[str] = set()
        for (customer, reason), n in reasons.items():  # the customer page's "denied today"
            denials = self._keys.customer_denials(customer, day)
            pipe.hincrby(denials, reason, n)
            if denials not in expiring:
                expiring.add(denials)
                pipe.expire(denials, DENIALS_TTL_S)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self.dropped += total
            log.warning(
                "decision statistics of second %d dropped (%d decisions): %s", second, total, exc
            )
            return 0
        self.flushed += 1
        return total

    async def run(self) -> None:
        """Flush just after every whole second until `stop()`; flushes once more on the way out."""
        while not self._stop.is_set():
            now = self._clock.now().timestamp()
            delay = 1.0 - (now % 1.0) + 0.005
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            await self.run_once()
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # redis-py may swallow a cancellation
                raise asyncio.CancelledError

    def stop(self) -> None:
        self._stop.set()
