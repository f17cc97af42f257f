"""Policies with many customers, and notifiers wired to a test receiver."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from gatekeeper.clock import Clock, ManualClock
from gatekeeper.engine import DecisionRequest, MeterRequest, StaticPolicy
from gatekeeper.model import Period, Policy, frozen_map
from gatekeeper.notify import (
    AlertNotifier,
    DeliveryLog,
    Endpoint,
    MemoryDeliveryLog,
    NotifierSettings,
)
from gatekeeper.settings import Secret
from gatekeeper.store.keys import KeySpace
from gatekeeper.tracing import Tracing
from tests.engine.policies import cap, flat, metered, plan, policy


def customers_policy(
    names: Sequence[str],
    *,
    limit: int = 50,
    thresholds: tuple[int, ...] = (50, 80, 100),
    period: Period = Period.MONTH,
    spend_cap_nano: int | None = None,
) -> Policy:
    p = plan(
        "pro",
        metered("requests", limit, thresholds=thresholds, period=period),
        spend_cap=cap(spend_cap_nano) if spend_cap_nano is not None else None,
    )
    base = policy(p, customer=names[0], prices=(flat("requests", 1_000_000),))
    one = base.customers[names[0]]
    customers = {n: dataclasses.replace(one, id=n) for n in names}
    return dataclasses.replace(base, customers=frozen_map(customers))


def req(customer: str, units: int = 1) -> DecisionRequest:
    return DecisionRequest(customer, meters=(MeterRequest("requests", units),))


def endpoint(url: str, *secrets: str, kinds: tuple[str, ...] = (), **kw: Any) -> Endpoint:
    return Endpoint(
        url=url, secrets=tuple(Secret(s) for s in secrets), kinds=frozenset(kinds), **kw
    )


def wall_clock() -> ManualClock:
    """A manual clock starting at the real time (so the reference verifier's 5-minute
    tolerance holds while a test moves it by seconds or minutes)."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


def make_notifier(
    redis: Redis,
    prefix: str,
    endpoints: Sequence[Endpoint],
    *,
    clock: Clock,
    consumer: str = "n1",
    log: DeliveryLog | None = None,
    policy_: Policy | None = None,
    tracing: Tracing | None = None,
    **settings: Any,
) -> AlertNotifier:
    defaults: dict[str, Any] = {
        "digest_window_s": 0,
        "backoff_base_ms": 100,
        "backoff_max_ms": 1_000,
        "timeout_s": 2.0,
    }
    defaults.update(settings)
    return AlertNotifier(
        redis=redis,
        keys=KeySpace(prefix=prefix, partitions=16),
        endpoints=endpoints,
        settings=NotifierSettings(**defaults),
        consumer=consumer,
        log_sink=log if log is not None else MemoryDeliveryLog(),
        policy=StaticPolicy(policy_) if policy_ is not None else None,
        clock=clock,
        tracing=tracing,
    )
