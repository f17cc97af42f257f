"""Builders of the notifier's records: delivery-log entries and dead letters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from gatekeeper.events import AlertEvent
from gatekeeper.notify.dispatch import Finished
from gatekeeper.notify.log import DeliveryAttempt, DeliveryOutcome
from gatekeeper.notify.state import DeadLetterEntry

__all__ = ["attempt_record", "job_dead_letter", "suppressed_record", "unparseable_dead_letter"]


def suppressed_record(alert: AlertEvent, reason: str, now: datetime) -> DeliveryAttempt:
    """An alert acked without a delivery (attempt 0, no endpoint)."""
    return DeliveryAttempt(
        endpoint="",
        webhook_id=alert.id,
        customer=alert.customer,
        attempt=0,
        outcome=DeliveryOutcome.SUPPRESSED,
        status=None,
        error=reason,
        latency_ms=0.0,
        time=now,
        alert_ids=(alert.id,),
    )


def attempt_record(done: Finished, outcome: DeliveryOutcome) -> DeliveryAttempt:
    """One finished attempt; `time` is when it started."""
    job, result = done.job, done.result
    return DeliveryAttempt(
        endpoint=job.endpoint.display,
        webhook_id=job.webhook_id,
        customer=job.customer,
        attempt=job.attempts,
        outcome=outcome,
        status=result.status,
        error=result.error,
        latency_ms=result.latency_ms,
        time=done.started,
        alert_ids=job.alert_ids,
    )


def job_dead_letter(done: Finished, reason: str, now: datetime) -> DeadLetterEntry:
    """A delivery given up on, with the body it would have carried."""
    job = done.job
    return DeadLetterEntry(
        partition=job.partition,
        endpoint=job.endpoint.display,
        endpoint_id=job.endpoint.id,
        webhook_id=job.webhook_id,
        customer=job.customer,
        alert_ids=job.alert_ids,
        reason=reason,
        attempts=job.attempts,
        last_status=done.result.status,
        time=now,
        body=job.body.decode(),
    )


def unparseable_dead_letter(
    partition: int, fields: Mapping[str, str], reason: str, now: datetime
) -> DeadLetterEntry:
    """A stream entry that is not an alert (no endpoint, no attempts; `body` the raw fields)."""
    return DeadLetterEntry(
        partition=partition,
        endpoint="",
        endpoint_id="",
        webhook_id=fields.get("id", ""),
        customer=fields.get("customer", ""),
        alert_ids=(),
        reason=reason,
        attempts=0,
        last_status=None,
        time=now,
        body=repr(dict(fields)),
    )
