"""Compare the Redis counters of a billing period with what the billing store holds.

Per customer and period (the customer's billing window named by `--period`):
  spend         KeySpace.spend(c, window.token)            u == sum(amount_nano) of its events
  billed_units  KeySpace.billed_units(c, f, window.token)  u == sum(billable) (graduated prices)
  quota         KeySpace.quota(c, f, w.token) for each quota window w overlapping the period
                                                           u == sum(billable) of events in w
A counter absent from Redis equals 0 while its window (plus the counters' grace) is live; once
it may have expired it is skipped, not compared. Minute quota windows are not compared (they
expire within minutes). Run it when the worker has caught up: events still in the streams show
as differences. Adjustment events carry their settlement time, so a reservation settled across
a window boundary shows up as equal and opposite differences in the two windows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from redis.asyncio import Redis

from gatekeeper.billing import BillingStore, PeriodArg
from gatekeeper.engine.ports import PolicySource
from gatekeeper.model import Period
from gatekeeper.periods import Window, window_for
from gatekeeper.store.keys import KeySpace

__all__ = ["Difference", "ReconcileReport", "holds_usage", "reconcile"]


@dataclass(frozen=True, slots=True)
class Difference:
    customer: str
    counter: str  # spend | billed_units | quota
    feature: str | None
    window: Window
    redis: int | None  # None = the counter is missing
    store: int

    def __str__(self) -> str:
        r = "missing" if self.redis is None else str(self.redis)
        diff = (self.redis or 0) - self.store
        return (
            f"customer={self.customer} counter={self.counter} feature={self.feature or '-'} "
            f"window={self.window.start.isoformat()}..{self.window.end.isoformat()} "
            f"redis={r} store={self.store} diff={diff:+d}"
        )


@dataclass(slots=True)
class ReconcileReport:
    compared: int = 0
    skipped: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)


async def holds_usage(redis: Redis, keys: KeySpace) -> bool:
    """Whether any partition's usage stream exists: the first admitted decision creates it and
    trimming never removes it, so a Redis without one never counted anything under this key
    prefix (a fresh or wrong Redis), and comparing its counters would report every stored
    amount as a difference. One pipelined EXISTS per partition."""
    pipe = redis.pipeline(transaction=False)
    for stream in keys.all_usage_streams():
        pipe.exists(stream)
    return any(int(n) for n in await pipe.execute())


async def reconcile(
    *,
    redis: Redis,
    keys: KeySpace,
    store: BillingStore,
    policy: PolicySource,
    period: PeriodArg,
    customers: Sequence[str] | None,
    now: datetime,
    grace: timedelta,
    directory_ids: Callable[[], AsyncIterator[list[str]]] | None = None,
) -> ReconcileReport:
    """Compare every counter of the period; read-only on both sides. Raises store/redis errors.

    `customers` None: every customer of the directory (`directory_ids`, a chunk at a time;
    None = those of `policy.current()`) and every customer the store billed in the period."""
    report = ReconcileReport()
    if customers is None:
        windows = [period.window(day) for day in (None, *range(1, 32))]
        since, until = min(w.start for w in windows), max(w.end for w in windows)
        known_ids = set(policy.current().customers)
        if directory_ids is not None:
            async for chunk in directory_ids():
                known_ids.update(chunk)
        customers = sorted(known_ids | set(await store.customers(since, until)))
    prices = policy.current().prices

    async def compare(
        c: str, counter: str, feature: str | None, key: str, w: Window, stored: int
    ) -> None:
        raw = await redis.hget(key, "u")
        if raw is None and w.end + grace < now:
            report.skipped.append(f"{c} {counter} {feature or '-'} {w.start.date()}: expired")
            return
        report.compared += 1
        value = None if raw is None else int(raw)
        if (value or 0) != stored:
            report.differences.append(Difference(c, counter, feature, w, value, stored))

    for c in customers:
        known = await policy.customer(c)
        window = period.window(known.billing_day if known else None)
        sums = await store.usage_sums(c, window.start, window.end)
        spent = sum(s.amount_nano for s in sums.values())
        await compare(c, "spend", None, keys.spend(c, window.token), window, spent)
        for f, price in sorted(prices.items()):
            if len(price.tiers) > 1:
                billed = sums[f].billable if f in sums else 0
                await compare(c, "billed_units", f, keys.billed_units(c, f, window.token),
                              window, billed)  # fmt: skip
        if known is None:
            continue
        for f, ent in sorted(known.entitlements.metered.items()):
            if ent.period is Period.MINUTE:
                report.skipped.append(f"{c} quota {f}: minute windows are not compared")
                continue
            w = window_for(window.start, ent.period, ent.anchor, known.billing_day)
            while w.start < window.end:
                in_w = await store.usage_sums(c, w.start, w.end)
                used = in_w[f].billable if f in in_w else 0
                await compare(c, "quota", f, keys.quota(c, f, w.token), w, used)
                w = window_for(w.end, ent.period, ent.anchor, known.billing_day)
    return report
