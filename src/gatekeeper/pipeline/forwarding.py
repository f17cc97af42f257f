"""Compose the optional loops of `gatekeeper worker` from settings: forwarder and notifier."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime

from redis.asyncio import Redis

from gatekeeper.billing import BillingStore
from gatekeeper.directory.live import LiveDirectory
from gatekeeper.events import AlertEvent
from gatekeeper.forward.consumer import UsageForwarder
from gatekeeper.forward.http import DeadLetter, HttpForwarder
from gatekeeper.forward.settings import ForwarderSettings
from gatekeeper.notify import (
    AlertNotifier,
    NotifierSettings,
    RedisDeliveryLog,
    endpoints_from_settings,
)
from gatekeeper.notify.customer_endpoints import CustomerEndpoints
from gatekeeper.settings import AlertSettings, ForwarderSection
from gatekeeper.store.keys import KeySpace
from gatekeeper.tracing import Tracing

__all__ = ["build_forwarder", "build_notifier"]

log = logging.getLogger(__name__)


def build_forwarder(
    section: ForwarderSection, *, redis: Redis, keys: KeySpace, consumer: str
) -> tuple[UsageForwarder, HttpForwarder] | None:
    """The forwarder loop and its HTTP sender, or None when `forwarder.url` is unset.

    Refused batches are kept in the `forward_dead_letter` stream with the reason, status and
    the CloudEvents as they were sent: nothing is dropped silently.
    """
    if not section.url:
        return None
    settings = ForwarderSettings(
        url=section.url,
        source=section.source,
        batch_size=section.batch_size,
        max_wait_ms=section.max_wait_ms,
        max_attempts=section.max_attempts,
        timeout_s=float(section.timeout_s),
        auth_token=section.auth_token,
    )

    async def dead_letter(item: DeadLetter) -> None:
        log.error("forwarder dead letter: %s (status %s, %d events)", item.reason, item.status,
                  len(item.events))  # fmt: skip
        await redis.xadd(
            keys.forward_dead_letter(),
            {
                "reason": item.reason,
                "status": "" if item.status is None else str(item.status),
                "events": json.dumps(list(item.events)),
                "raw": json.dumps([dict(r) for r in item.raw]),
            },
        )

    sender = HttpForwarder(settings=settings, dead_letter=dead_letter)
    loop = UsageForwarder(
        redis=redis, keys=keys, sender=sender, dead_letter=dead_letter, settings=settings,
        consumer=consumer,
    )  # fmt: skip
    return loop, sender


def build_notifier(
    alerts: AlertSettings,
    env: Mapping[str, str],
    *,
    redis: Redis,
    keys: KeySpace,
    consumer: str,
    policy: LiveDirectory,
    tracing: Tracing | None = None,
    store: BillingStore | None = None,
) -> AlertNotifier | None:
    """The webhook notifier: the operator's endpoints (settings) and customers' own (API,
    read from each alert's customer's record in `policy`, the directory). `store`: the billing
    store whose alert log learns each delivered alert's delivery time.

    Raises ValueError naming `alerts.webhooks[i]` when a signing secret is malformed or not
    configured; logs an error for each endpoint whose secret variable is unset (held).
    """
    endpoints = endpoints_from_settings(alerts, env)
    for endpoint in endpoints:
        if endpoint.held is not None:
            log.error(
                "alerts: %s — alerts for %s are dead-lettered until it is set and the worker "
                "restarted; billing runs",
                endpoint.held, endpoint.display,
            )  # fmt: skip
    return AlertNotifier(
        redis=redis,
        keys=keys,
        endpoints=endpoints,
        settings=NotifierSettings.from_alert_settings(alerts),
        consumer=consumer,
        log_sink=RedisDeliveryLog(redis=redis, keys=keys),
        policy=policy,
        customer_endpoints=CustomerEndpoints(policy),
        on_delivered=None if store is None else _mark_delivered(store),
        tracing=tracing,
    )


def _mark_delivered(
    store: BillingStore,
) -> Callable[[Sequence[AlertEvent], datetime], Awaitable[None]]:
    """Record the delivery time in the alert log (logging the alert first if the alert log's
    own consumer has not reached it yet)."""

    async def mark(alerts: Sequence[AlertEvent], at: datetime) -> None:
        for alert in alerts:
            if not await store.mark_alert_delivered(alert.id, at=at):
                await store.insert_alert(alert, delivered_at=at)

    return mark
