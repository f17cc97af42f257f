"""What happens to one alert: suppressed, held for the customer's digest, or sent now.

Rules, in order: stale (older than `stale_after_s`) or muted kind or no endpoint wants it ->
suppressed; the customer's digest window is open -> held until the window's end; otherwise it
opens the window and goes out at once to every endpoint that wants it and has not had it.
At a window's end the held alerts go out as one digest per endpoint (a single alert goes out
as itself). Every (endpoint, alert id) delivered is remembered, so nothing reaches an endpoint
twice, digests included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gatekeeper.clock import from_us
from gatekeeper.events import AlertEvent
from gatekeeper.forward.cloudevent import JsonObject
from gatekeeper.notify.dispatch import Job
from gatekeeper.notify.payload import digest_payload, encode
from gatekeeper.notify.settings import Endpoint, NotifierSettings
from gatekeeper.notify.state import AlertMutes, NotifyState
from gatekeeper.store.consumers import Entry

__all__ = ["Held", "Router", "Tracked"]


@dataclass(eq=False)
class Tracked:
    """A stream entry the notifier holds pending until `open` (jobs + digest holds) is 0."""

    entry: Entry
    partition: int
    alert: AlertEvent
    payload: JsonObject
    open: int = 0


@dataclass(eq=False)
class Held:
    """A customer's open digest: alerts held until `end`."""

    customer: str
    partition: int
    end: datetime
    items: list[Tracked] = field(default_factory=list)


class Router:
    """Turns alerts into jobs (see the module docstring). Redis errors propagate; a failed
    call leaves nothing half-done that a retry of the same alert would not repeat."""

    def __init__(
        self,
        *,
        state: NotifyState,
        mutes: AlertMutes,
        endpoints: Sequence[Endpoint],
        settings: NotifierSettings,
        own: Callable[[str], Awaitable[Sequence[Endpoint]]] | None = None,
    ) -> None:
        """`endpoints`: the operator's; `own(customer)`: that customer's own endpoints."""
        self._state = state
        self._mutes = mutes
        self._endpoints = tuple(endpoints)
        self._own = own
        self._settings = settings
        self._held: dict[str, Held] = {}

    async def _candidates(self, customer: str) -> tuple[Endpoint, ...]:
        if self._own is None:
            return self._endpoints
        return (*self._endpoints, *await self._own(customer))

    def set_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        """Replace the endpoints (customers add and remove their own at run time)."""
        self._endpoints = tuple(endpoints)

    @property
    def held(self) -> int:
        return sum(len(h.items) for h in self._held.values())

    def next_digest_due(self) -> datetime | None:
        return min((h.end for h in self._held.values()), default=None)

    async def route(self, item: Tracked, now: datetime) -> list[Job] | str | None:
        """Jobs to start, a suppression reason, or None when the alert is held (item.open
        counts the hold). An empty list = every endpoint already had it."""
        alert = item.alert
        stale = self._settings.stale_after_s
        if stale is not None and alert.time < now - timedelta(seconds=stale):
            return "stale"
        if alert.kind.value in await self._mutes.muted(alert.customer):
            return "muted"
        targets = [
            e
            for e in await self._candidates(alert.customer)
            if e.accepts(alert.kind.value) and e.serves(alert.customer)
        ]
        if not targets:
            return "no endpoint accepts this kind"
        window = self._settings.digest_window_s
        if window > 0:
            opened, end_us = await self._state.open_window(alert.customer, now, window, alert.id)
            if not opened:
                held = self._held.get(alert.customer)
                if held is None:
                    held = Held(alert.customer, item.partition, from_us(end_us))
                    self._held[alert.customer] = held
                held.items.append(item)
                item.open += 1
                return None
        return await self._jobs(targets, [item], now)

    async def flush(self, now: datetime) -> tuple[list[Job], list[Tracked]]:
        """Digests whose window ended by `now`: their jobs, and every item released (their
        hold no longer counted; those with open == 0 are done)."""
        jobs: list[Job] = []
        released: list[Tracked] = []
        for customer in [c for c, h in self._held.items() if h.end <= now]:
            held = self._held[customer]
            targets = [
                e
                for e in await self._candidates(customer)
                if e.serves(customer) and any(e.accepts(t.alert.kind) for t in held.items)
            ]
            jobs.extend(await self._jobs(targets, held.items, now, window_end=held.end))
            del self._held[customer]
            for item in held.items:
                item.open -= 1
            released.extend(held.items)
        return jobs, released

    async def _jobs(
        self,
        targets: Sequence[Endpoint],
        items: Sequence[Tracked],
        now: datetime,
        window_end: datetime | None = None,
    ) -> list[Job]:
        customer = items[0].alert.customer
        wanted = [(e, t) for e in targets for t in items if e.accepts(t.alert.kind)]
        done = await self._state.delivered(customer, [(e.id, t.alert.id) for e, t in wanted])
        jobs = []
        for endpoint in targets:
            todo = [t for (e, t), d in zip(wanted, done, strict=True) if e is endpoint and not d]
            if not todo:
                continue
            if len(todo) == 1:
                one = todo[0]
                webhook_id, body = one.alert.id, encode(one.payload)
                mark: tuple[str, ...] = (one.alert.id,)
            else:
                end = window_end or now
                start = end - timedelta(seconds=self._settings.digest_window_s)
                payload = digest_payload(
                    customer=customer,
                    alerts=[t.payload for t in todo],
                    window_start=start,
                    window_end=end,
                )
                webhook_id, body = str(payload["id"]), encode(payload)
                mark = (*(t.alert.id for t in todo), webhook_id)
            for t in todo:
                t.open += 1
            jobs.append(
                Job(
                    endpoint=endpoint,
                    webhook_id=webhook_id,
                    customer=customer,
                    partition=todo[0].partition,
                    body=body,
                    alert_ids=tuple(t.alert.id for t in todo),
                    mark_ids=mark,
                    covers=tuple(todo),
                    due=now,
                    links=tuple(t.alert.traceparent for t in todo if t.alert.traceparent),
                )
            )
        return jobs
