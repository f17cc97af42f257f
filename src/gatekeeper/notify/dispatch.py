"""The outbox: webhook jobs waiting for their time and their endpoint, attempted as tasks.

A job is one webhook (one alert, or one digest) to one endpoint. It starts when it is due and
its endpoint has room: at most `max_in_flight` requests at once, or one at a time spaced by
`min_interval_s` (measured between attempt starts) when that is set. Attempts run as tasks so
a slow endpoint never holds up another; the notifier harvests their results each pass and
decides (retry later, done, dead letter). Times come from the injected clock.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from gatekeeper.notify.http import AttemptResult, WebhookClient
from gatekeeper.notify.settings import Endpoint, NotifierSettings
from gatekeeper.tracing.tracer import end_span

if TYPE_CHECKING:
    from gatekeeper.tracing import Tracing

__all__ = ["Dispatcher", "Finished", "Job"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One webhook to one endpoint. `covers` are the notifier's tracked entries it resolves;
    `mark_ids` the ids remembered as delivered to the endpoint once it lands."""

    endpoint: Endpoint
    webhook_id: str
    customer: str
    partition: int
    body: bytes
    alert_ids: tuple[str, ...]
    mark_ids: tuple[str, ...]
    covers: tuple[Any, ...]
    due: datetime
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    seq: int = field(default=0)
    # traceparents of the decisions whose alerts it carries (tracing on): the delivery's links
    links: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finished:
    job: Job
    result: AttemptResult
    started: datetime


class Dispatcher:
    """Queues jobs and starts due ones as tasks. Not thread-safe; one event loop."""

    def __init__(
        self, *, client: WebhookClient, settings: NotifierSettings, tracing: Tracing | None = None
    ) -> None:
        """`tracing`: each attempt is a CLIENT span linked to the decisions of its alerts."""
        self._client = client
        self._tracing = tracing
        self._settings = settings
        self._queue: list[Job] = []
        self._seq = itertools.count()
        self._next_free: dict[str, datetime] = {}
        self._busy: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Finished]] = set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def _interval(self, endpoint: Endpoint) -> float:
        own = endpoint.min_interval_s
        return self._settings.min_interval_s if own is None else own

    def _room(self, endpoint: Endpoint) -> int:
        limit = 1 if self._interval(endpoint) > 0 else self._settings.max_in_flight
        return limit - self._busy.get(endpoint.id, 0)

    def add(self, job: Job) -> None:
        job.seq = next(self._seq)
        self._queue.append(job)

    def next_due(self) -> datetime | None:
        """Earliest time a queued job may start (due and endpoint spacing), or None."""
        times = [max(j.due, self._next_free.get(j.endpoint.id, j.due)) for j in self._queue]
        return min(times, default=None)

    def start_due(self, now: datetime) -> int:
        """Start every job that may start at `now`, oldest first. Returns how many started."""
        started = 0
        waiting: list[Job] = []
        for job in sorted(self._queue, key=lambda j: (j.due, j.seq)):
            ep = job.endpoint
            free = self._next_free.get(ep.id)
            if job.due > now or (free is not None and free > now) or self._room(ep) <= 0:
                waiting.append(job)
                continue
            interval = self._interval(ep)
            if interval > 0:
                self._next_free[ep.id] = now + timedelta(seconds=interval)
            self._busy[ep.id] = self._busy.get(ep.id, 0) + 1
            job.attempts += 1
            task = asyncio.create_task(self._attempt(job, now))
            self._tasks.add(task)
            started += 1
        self._queue = waiting
        return started

    async def _attempt(self, job: Job, now: datetime) -> Finished:
        ep = job.endpoint
        # a customer's own endpoint may not reach internal addresses (SSRF); the operator's may
        public_only = ep.customer is not None and not self._settings.allow_private_customer_webhooks
        if ep.held is not None:  # no secret to sign with: dead-lettered at once, never sent
            self._busy[ep.id] -= 1
            return Finished(job, AttemptResult(False, False, None, ep.held, 0.0), now)
        try:
            if self._tracing is None:
                result = await self._client.post(
                    ep.url, job.webhook_id, job.body, ep.secrets, public_only=public_only
                )
            else:
                result = await self._traced_post(self._tracing, job, public_only)
        except Exception as exc:  # a bug in the client must not lose the job: retry it
            log.exception("webhook attempt crashed: endpoint=%s id=%s", ep.display, job.webhook_id)
            result = AttemptResult(False, True, None, f"{type(exc).__name__}: {exc}", 0.0)
        finally:
            self._busy[ep.id] -= 1
        return Finished(job, result, now)

    async def _traced_post(self, tracing: Tracing, job: Job, public_only: bool) -> AttemptResult:
        ep = job.endpoint
        span = tracing.linked(
            "webhook delivery",
            job.links,
            kind=SpanKind.CLIENT,
            attributes={
                "gatekeeper.webhook_id": job.webhook_id,
                "gatekeeper.endpoint": ep.id,
                "gatekeeper.customer": job.customer,
                "gatekeeper.attempt": job.attempts,
            },
        )
        try:
            result = await self._client.post(
                ep.url, job.webhook_id, job.body, ep.secrets, public_only=public_only
            )
        except BaseException as exc:
            end_span(span, exc)
            raise
        if result.status is not None:
            span.set_attribute("http.response.status_code", result.status)
        if not result.ok:
            # the status only: an error's text may name the endpoint's address
            why = f"HTTP {result.status}" if result.status is not None else "no response"
            span.set_status(Status(StatusCode.ERROR, why))
        end_span(span)
        return result

    def finished(self) -> list[Finished]:
        """Results of the attempts that completed since the last call (in no set order)."""
        done = [t for t in self._tasks if t.done()]
        self._tasks.difference_update(done)
        return [t.result() for t in done if not t.cancelled()]

    async def wait(self, timeout_s: float | None) -> None:
        """Wait until every in-flight attempt completed, or `timeout_s` passed."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def cancel(self) -> None:
        """Cancel in-flight attempts (shutdown); their entries stay pending in Redis."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
