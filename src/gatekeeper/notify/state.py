"""Redis state of alert suppression: mutes, "already delivered" marks, digest windows, and the
alert dead letter. Keys come from `KeySpace` only; per-customer keys share the customer's slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from gatekeeper.clock import to_us
from gatekeeper.events import AlertKind
from gatekeeper.store.keys import KeySpace

__all__ = ["ALERT_KINDS", "AlertMutes", "DeadLetterEntry", "NotifyState"]

ALERT_KINDS = frozenset(k.value for k in AlertKind)
_KINDS = ALERT_KINDS

# Open the customer's digest window unless one is open at `now` (atomic check-and-set, so two
# consumers never both treat an alert as the window's first). The value is "<end_us>:<alert
# id that opened it>": the opening alert routed again (its entry taken over from a stopped or
# dead notifier, or re-read after a restart) is still the window's first, sent at once, not
# held for a digest of one.
# KEYS[1] notify_state(customer)   ARGV now_us, window_us, ttl_ms, alert id
# returns {1, end_us} when this alert opened the window, {0, end_us} when another one did.
# (Inline rather than a lua/*.lua file: package data only ships gatekeeper/lua/.)
_OPEN_WINDOW = """
local open = redis.call('GET', KEYS[1])
local now = tonumber(ARGV[1])
if open then
  local ends, opener = string.match(open, '^(%d+):?(.*)$')
  if ends and tonumber(ends) > now then
    if opener ~= '' and opener == ARGV[4] then return {1, ends} end
    return {0, ends}
  end
end
local ends = string.format('%.0f', now + tonumber(ARGV[2]))
redis.call('SET', KEYS[1], ends .. ':' .. ARGV[4], 'PX', ARGV[3])
return {1, ends}
"""


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class AlertMutes:
    """Alert kinds a customer muted (a Redis set per customer; no expiry).

    Raises ValueError for an unknown kind, redis errors otherwise.
    """

    def __init__(self, *, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys

    @staticmethod
    def _check(kinds: Iterable[str]) -> list[str]:
        wanted = [str(k) for k in kinds]
        unknown = sorted(set(wanted) - _KINDS)
        if unknown:
            raise ValueError(f"unknown alert kinds {unknown}; known: {sorted(_KINDS)}")
        return wanted

    async def mute(self, customer: str, kinds: Iterable[str]) -> None:
        wanted = self._check(kinds)
        if wanted:
            await self._redis.sadd(self._keys.alert_mutes(customer), *wanted)

    async def unmute(self, customer: str, kinds: Iterable[str] | None = None) -> None:
        """Unmute `kinds`, or every kind when None."""
        key = self._keys.alert_mutes(customer)
        if kinds is None:
            await self._redis.delete(key)
            return
        wanted = self._check(kinds)
        if wanted:
            await self._redis.srem(key, *wanted)

    async def muted(self, customer: str) -> frozenset[str]:
        members = await self._redis.smembers(self._keys.alert_mutes(customer))
        return frozenset(_s(m) for m in members)


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """A delivery given up on. endpoint is the display url; status the last HTTP status."""

    partition: int
    endpoint: str
    endpoint_id: str
    webhook_id: str
    customer: str
    alert_ids: tuple[str, ...]
    reason: str
    attempts: int
    last_status: int | None
    time: datetime
    body: str


class NotifyState:
    """Delivered marks, digest windows and the dead letter of the notifier (redis errors raise)."""

    def __init__(self, *, redis: Redis, keys: KeySpace, dedupe_ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = dedupe_ttl_s
        self._open_window = redis.register_script(_OPEN_WINDOW)

    async def delivered(self, customer: str, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether each (endpoint id, alert id) was already delivered (one round trip)."""
        if not pairs:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for endpoint_id, alert_id in pairs:
                pipe.exists(self._keys.alert_delivered(customer, endpoint_id, alert_id))
            found = await pipe.execute()
        return [bool(n) for n in found]

    async def mark_delivered(self, customer: str, endpoint_id: str, ids: Sequence[str]) -> None:
        """Remember that `ids` (alert and digest ids) reached the endpoint, for the TTL."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for alert_id in ids:
                key = self._keys.alert_delivered(customer, endpoint_id, alert_id)
                pipe.set(key, "1", ex=self._ttl_s)
            await pipe.execute()

    async def open_window(
        self, customer: str, now: datetime, window_s: float, alert_id: str
    ) -> tuple[bool, int]:
        """Open the customer's digest window at `now` for `alert_id` unless one is open
        (atomic); a window `alert_id` itself opened counts as opened again.

        Returns (opened, window end in epoch microseconds). The key outlives the window by a
        day so a clock that runs ahead of Redis's does not reopen it early.
        """
        window_us = int(window_s * 1_000_000)
        ttl_ms = window_us // 1000 + 86_400_000
        reply = await self._open_window(
            keys=[self._keys.notify_state(customer)], args=[to_us(now), window_us, ttl_ms, alert_id]
        )
        return bool(int(reply[0])), int(_s(reply[1]))

    async def dead_letter(self, entry: DeadLetterEntry) -> None:
        fields = {
            "endpoint": entry.endpoint,
            "endpoint_id": entry.endpoint_id,
            "webhook_id": entry.webhook_id,
            "customer": entry.customer,
            "alert_ids": ",".join(entry.alert_ids),
            "reason": entry.reason,
            "attempts": str(entry.attempts),
            "last_status": "" if entry.last_status is None else str(entry.last_status),
            "time_us": str(to_us(entry.time)),
            "body": entry.body,
        }
        await self._redis.xadd(self._keys.alert_dead_letter(entry.partition), fields)  # type: ignore[arg-type]
