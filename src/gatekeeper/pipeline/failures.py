"""Which failures the worker's loops survive: the shared `transient` of their run_loop."""

from __future__ import annotations

from redis.exceptions import RedisError

from gatekeeper.billing import BillingStoreError

__all__ = ["is_transient"]


def is_transient(exc: BaseException) -> bool:
    """Redis unreachable or the billing store busy: retried. A store that refuses (a
    non-transient BillingStoreError) and anything else is not: the loop dies."""
    if isinstance(exc, BillingStoreError):
        return exc.transient
    return isinstance(exc, (RedisError, OSError))
