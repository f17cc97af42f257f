"""What the operator dashboard shows, read from every process's flushed seconds (one pipeline)."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gatekeeper.clock import Clock
from gatekeeper.errors import StoreUnavailable
from gatekeeper.events import AlertEvent
from gatekeeper.stats.recorder import ALLOWED_CLASSES, outcome_class
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.resp import reply_text
from gatekeeper.store.scripts import load_script

__all__ = [
    "AlertJson",
    "CustomerCount",
    "DenialsReader",
    "StatsReader",
    "StatsSnapshot",
    "StreamLag",
]

AlertJson = Callable[[AlertEvent], Mapping[str, object]]

log = logging.getLogger(__name__)

# undelivered entries counted per stream at most, where Redis does not give the lag (6.2): the
# count runs inside Redis (between decisions), ~0.1 ms per 1,000 entries, per partition per read
LAG_COUNT_CAP = 1_000
_STREAM_LAG = load_script("stream_lag", library=False)


class DenialsReader:
    """A customer's denials today by reason, as every serving process flushed them (each
    second, StatsFlusher): what the customer page shows as "denied today"."""

    def __init__(self, *, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys

    async def on(self, customer: str, now: datetime) -> dict[str, int]:
        """Reason class -> denials on `now`'s UTC day, most first. Raises StoreUnavailable."""
        day = now.astimezone(UTC).date().isoformat()
        try:
            raw = await self._redis.hgetall(self._keys.customer_denials(customer, day))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        counts = {reply_text(k): int(v) for k, v in raw.items()}
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True, slots=True)
class CustomerCount:
    customer: str
    decisions: int
    denied: int


@dataclass(frozen=True, slots=True)
class StreamLag:
    """The billing consumer group over every partition usage stream.

    `lag`: entries not yet delivered to the group — XINFO GROUPS' `lag` on Redis 7, counted
    (stream_lag.lua) where Redis does not give it (6.2, the embedded Redis); a stream without
    the group counts whole. `lag_capped`: some stream had LAG_COUNT_CAP or more undelivered
    entries, so `lag` is a lower bound. None when a count failed.
    """

    group: str
    pending: int
    lag: int | None
    length: int  # entries held in the usage streams
    streams_without_group: int
    lag_capped: bool = False


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """What the operator dashboard shows; `series[class][i]` counts decisions in `seconds[i]`."""

    at: datetime
    seconds: tuple[int, ...]
    series: Mapping[str, tuple[int, ...]]
    rates: Mapping[str, float]  # decisions/s by class over the last `rate_window_s` seconds
    rate_window_s: int
    denials: Mapping[str, int]  # denied decisions by class over the whole window
    top_customers: tuple[CustomerCount, ...]
    lag: StreamLag | None
    alerts: tuple[AlertEvent, ...]  # newest first

    def to_json(self, alert_json: AlertJson) -> dict[str, object]:
        """As JSON; `alert_json` renders an alert the way the alerts API does."""
        lag = self.lag
        return {
            "at": _iso(self.at),
            "window_s": len(self.seconds),
            "seconds": list(self.seconds),
            "series": {name: list(values) for name, values in self.series.items()},
            "rates": dict(self.rates),
            "rate_window_s": self.rate_window_s,
            "total_rate": round(sum(self.rates.values()), 3),
            "denials": dict(self.denials),
            "top_customers": [
                {"customer": c.customer, "decisions": c.decisions, "denied": c.denied}
                for c in self.top_customers
            ],
            "lag": None
            if lag is None
            else {
                "group": lag.group,
                "pending": lag.pending,
                "lag": lag.lag,
                "length": lag.length,
                "streams_without_group": lag.streams_without_group,
                "lag_capped": lag.lag_capped,
            },
            "alerts": [alert_json(a) for a in self.alerts],
        }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _entry_order(entry_id: bytes | str) -> tuple[int, int]:
    ms, _, seq = reply_text(entry_id).partition("-")
    return int(ms), int(seq or 0)


class StatsReader:
    """Reads what every process flushed, plus stream lag and recent alerts (one pipeline)."""

    def __init__(
        self,
        *,
        redis: Redis,
        keys: KeySpace,
        clock: Clock,
        group: str,
        window_s: int = 60,
        rate_window_s: int = 10,
        top: int = 10,
        alerts: int = 20,
    ) -> None:
        if not 1 <= rate_window_s <= window_s:
            raise ValueError("need 1 <= rate_window_s <= window_s")
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._group = group
        self._window = window_s
        self._rate_window = rate_window_s
        self._top = top
        self._alerts = alerts
        self._cached: tuple[int, StatsSnapshot] | None = None
        self._lock = asyncio.Lock()

    async def snapshot(self) -> StatsSnapshot:
        """The view as of the clock's current second (computed at most once per second).

        The newest second shown is the one that just ended. Raises redis errors.
        """
        now = self._clock.now()
        second = int(now.timestamp())
        async with self._lock:
            if self._cached is not None and self._cached[0] == second:
                return self._cached[1]
            snap = await self._read(now, second)
            self._cached = (second, snap)
            return snap

    async def _read(self, now: datetime, second: int) -> StatsSnapshot:
        seconds = tuple(range(second - self._window, second))
        pipe = self._redis.pipeline(transaction=False)
        for s in seconds:
            pipe.hgetall(self._keys.stats_second(s))
        streams = self._keys.all_usage_streams()
        for stream in streams:
            pipe.xinfo_groups(stream)
            pipe.xlen(stream)
        alert_streams = self._keys.all_alert_streams()
        for stream in alert_streams:
            pipe.xrevrange(stream, count=self._alerts)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        hashes = replies[: len(seconds)]
        lag_replies = replies[len(seconds) : len(seconds) + 2 * len(streams)]
        alert_replies = replies[len(seconds) + 2 * len(streams) :]
        for reply in hashes:
            if isinstance(reply, Exception):
                raise reply
        return self._compose(
            now,
            seconds,
            hashes,
            await self._lag(streams, lag_replies),
            self._recent(alert_replies),
        )

    def _compose(
        self,
        now: datetime,
        seconds: tuple[int, ...],
        hashes: list[Mapping[bytes | str, bytes | str]],
        lag: StreamLag | None,
        alerts: tuple[AlertEvent, ...],
    ) -> StatsSnapshot:
        series: dict[str, list[int]] = {}
        decisions: dict[str, int] = {}
        denied: dict[str, int] = {}
        for i, fields in enumerate(hashes):
            for raw_name, raw_value in fields.items():
                name, value = reply_text(raw_name), int(raw_value)
                kind, _, subject = name.partition(":")
                if kind == "o":
                    row = series.setdefault(outcome_class(subject), [0] * len(seconds))
                    row[i] += value
                elif kind == "c":
                    decisions[subject] = decisions.get(subject, 0) + value
                elif kind == "d":
                    denied[subject] = denied.get(subject, 0) + value
        recent = slice(len(seconds) - self._rate_window, len(seconds))
        rates = {
            name: round(sum(row[recent]) / self._rate_window, 3) for name, row in series.items()
        }
        denials = {
            name: sum(row)
            for name, row in series.items()
            if name not in ALLOWED_CLASSES and any(row)
        }
        top = heapq.nlargest(self._top, decisions.items(), key=lambda kv: (kv[1], kv[0]))
        return StatsSnapshot(
            at=now,
            seconds=seconds,
            series={name: tuple(row) for name, row in sorted(series.items())},
            rates=rates,
            rate_window_s=self._rate_window,
            denials=dict(sorted(denials.items(), key=lambda kv: -kv[1])),
            top_customers=tuple(CustomerCount(c, n, denied.get(c, 0)) for c, n in top),
            lag=lag,
            alerts=alerts,
        )

    async def _lag(self, streams: list[str], replies: list[Any]) -> StreamLag | None:
        pending, lag, length, without = 0, 0, 0, 0
        uncounted: list[tuple[str, str]] = []  # (stream, last-delivered-id): Redis gave no lag
        for stream, groups, xlen in zip(streams, replies[0::2], replies[1::2], strict=True):
            if isinstance(xlen, Exception):
                log.warning("stream lag unavailable: %s", xlen)
                return None
            length += int(xlen)
            if isinstance(groups, Exception):  # no such stream yet: nothing written, no group
                without += 1
                continue
            mine = [g for g in groups if reply_text(g.get("name", b"")) == self._group]
            if not mine:
                without += 1
                lag += int(xlen)  # no group yet: none of its entries was delivered
                continue
            group = mine[0]
            pending += int(group.get("pending") or 0)
            if group.get("lag") is not None:
                lag += int(group["lag"])
            else:  # Redis 6.2 (or a lag Redis 7 cannot compute after deletions): count them
                uncounted.append((stream, reply_text(group.get("last-delivered-id", b"0-0"))))
        capped = False
        for stream, last in uncounted:
            try:
                n = int(await _STREAM_LAG.run(self._redis, [stream], [last, LAG_COUNT_CAP]))
            except RedisError as exc:
                log.warning("stream lag unavailable: %s", exc)
                return None
            lag += n
            capped = capped or n >= LAG_COUNT_CAP
        return StreamLag(self._group, pending, lag, length, without, capped)

    def _recent(self, replies: list[Any]) -> tuple[AlertEvent, ...]:
        found: list[tuple[tuple[int, int], AlertEvent]] = []
        for reply in replies:
            if isinstance(reply, Exception):
                log.warning("recent alerts unavailable: %s", reply)
                continue
            for entry_id, fields in reply:
                try:
                    found.append((_entry_order(entry_id), AlertEvent.from_fields(fields)))
                except ValueError as exc:
                    log.warning("skipping an alert entry: %s", exc)
        # newest first: by the alert's time, then by when Redis appended it
        newest = heapq.nlargest(self._alerts, found, key=lambda pair: (pair[1].time, pair[0]))
        return tuple(alert for _, alert in newest)

    async def customer_alerts(self, customer: str, *, scan: int = 500) -> tuple[AlertEvent, ...]:
        """The customer's most recent alerts (newest first) among the last `scan` entries of
        its partition's alert stream. Raises redis errors."""
        stream = self._keys.alert_stream(self._keys.partition(customer))
        reply: Any = await self._redis.xrevrange(stream, count=scan)
        found: list[AlertEvent] = []
        for _, fields in reply:
            if reply_text(fields.get(b"customer", fields.get("customer", b""))) != customer:
                continue
            try:
                found.append(AlertEvent.from_fields(fields))
            except ValueError as exc:
                log.warning("skipping an alert entry: %s", exc)
            if len(found) >= self._alerts:
                break
        return tuple(found)
