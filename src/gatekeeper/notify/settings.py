"""Webhook endpoints and the notifier's delivery knobs.

`endpoints_from_settings` turns `Settings.alerts.webhooks` plus an environment Mapping into
`Endpoint`s with their secrets (the package never reads `os.environ` itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gatekeeper.events import AlertKind
from gatekeeper.notify.signing import parse_secrets
from gatekeeper.settings import AlertSettings, Secret

__all__ = ["Endpoint", "NotifierSettings", "endpoints_from_settings"]

_KINDS = frozenset(k.value for k in AlertKind)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One webhook receiver.

    secrets: `whsec_...` values, current first; every delivery is signed with all of them
        (Standard Webhooks rotation). Reprs are masked.
    kinds: alert kinds it wants; empty = all. A digest sent here holds only accepted kinds.
    min_interval_s: overrides `NotifierSettings.min_interval_s` for this endpoint when set.
    customer: set for a customer's own endpoint (API), which receives only that customer's
        alerts; None = the operator's endpoint, which receives every customer's.
    held: why nothing may be sent here (its signing secret is not configured); every
        delivery to it is dead-lettered unsent, with this reason, instead of going out unsigned.

    Raises ValueError for an empty url, no secrets (unless held), or an unknown kind.
    """

    url: str
    secrets: tuple[Secret, ...]
    kinds: frozenset[str] = frozenset()
    min_interval_s: float | None = None
    customer: str | None = None
    held: str | None = None

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("webhook url must not be empty")
        if not self.secrets and self.held is None:
            raise ValueError(f"webhook {self.display} has no signing secret")
        unknown = sorted(set(self.kinds) - _KINDS)
        if unknown:
            raise ValueError(f"webhook {self.display}: unknown alert kinds {unknown}")

    @property
    def id(self) -> str:
        """Stable short id of the url (in Redis keys and logs instead of the url itself)."""
        owner = "" if self.customer is None else f"{self.customer}|"
        return hashlib.sha256(f"{owner}{self.url}".encode()).hexdigest()[:16]

    @property
    def display(self) -> str:
        """The url without credentials or query (safe to log)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def accepts(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds

    def serves(self, customer: str) -> bool:
        return self.customer is None or self.customer == customer


@dataclass(frozen=True, slots=True)
class NotifierSettings:
    """How alerts are delivered.

    digest_window_s: after a customer's first alert goes out, later ones within this many
        seconds are held and sent as one digest at the window's end; 0 = no digests.
    min_interval_s: at least this long between two requests to the same endpoint (attempt
        starts); 0 = none. With it set, one request per endpoint is in flight at a time.
    max_attempts: attempts of one delivery (5xx, 408, 429, timeouts, connection errors) before
        it is dead-lettered; any other non-2xx status dead-letters at once.
    timeout_s: one attempt, connect to last response byte.
    backoff_base_ms / backoff_max_ms: full jitter, uniform(0, min(max, base * 2**(n-1))) before
        attempt n+1; a `Retry-After` replaces it, capped at `retry_after_max_s`.
    max_in_flight: concurrent requests per endpoint (without min_interval_s).
    dedupe_ttl_s: how long "delivered to this endpoint" is remembered per alert id.
    stale_after_s: alerts older than this when read are acked as suppressed; None = never.
    batch_size: stream entries read per pass.
    reclaim_idle_ms / reclaim_interval_s: entries pending this long at another consumer are
        taken over (XAUTOCLAIM), checked this often; held entries are kept fresh meanwhile.
    allow_private_customer_webhooks: deliver to customers' own endpoints (set through the
        API) on loopback, private, link-local and other internal addresses too; False (the
        default) dead-letters such deliveries at once (notify/addresses.py). The operator's
        endpoints are never restricted.
    """

    digest_window_s: float = 60.0
    min_interval_s: float = 0.0
    max_attempts: int = 8
    timeout_s: float = 10.0
    backoff_base_ms: int = 500
    backoff_max_ms: int = 300_000
    retry_after_max_s: float = 3_600.0
    max_in_flight: int = 4
    dedupe_ttl_s: int = 7 * 86_400
    stale_after_s: float | None = None
    batch_size: int = 100
    reclaim_idle_ms: int = 300_000
    reclaim_interval_s: float = 30.0
    allow_private_customer_webhooks: bool = False

    def __post_init__(self) -> None:
        for name in ("max_attempts", "max_in_flight", "batch_size", "dedupe_ttl_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"notifier.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("digest_window_s", "min_interval_s", "retry_after_max_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"notifier.{name} must be >= 0, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise ValueError(f"notifier.timeout_s must be > 0, got {self.timeout_s}")
        if self.backoff_base_ms < 0 or self.backoff_max_ms < self.backoff_base_ms:
            raise ValueError("notifier backoff needs 0 <= backoff_base_ms <= backoff_max_ms")
        if self.reclaim_idle_ms < 1 or self.reclaim_interval_s <= 0:
            raise ValueError("notifier reclaim_idle_ms and reclaim_interval_s must be > 0")

    @classmethod
    def from_alert_settings(cls, alerts: AlertSettings, **overrides: Any) -> NotifierSettings:
        """Defaults with `digest_window_s` and `allow_private_customer_webhooks` taken from
        `Settings.alerts`; `overrides` by field.
        Raises TypeError for an unknown field, ValueError for a bad value."""
        values: dict[str, Any] = {
            "digest_window_s": float(alerts.digest_window_s),
            "allow_private_customer_webhooks": alerts.allow_private_customer_webhooks,
        }
        values.update(overrides)
        return cls(**values)


def endpoints_from_settings(alerts: AlertSettings, env: Mapping[str, str]) -> tuple[Endpoint, ...]:
    """Endpoints of `alerts.webhooks`, secrets read from `env[secret_env]`.

    The value holds one or more `whsec_...` secrets separated by spaces or commas, current
    first (list the previous one too while receivers rotate). Raises ValueError naming
    `alerts.webhooks[i]` and the variable (never its value) when it is malformed or when
    `secret_env` is not set. An endpoint whose variable is unset comes back `held` (see
    `Endpoint`): the worker still bills, and says at start which endpoint waits for a secret.
    """
    endpoints = []
    for index, hook in enumerate(alerts.webhooks):
        where = f"alerts.webhooks[{index}]"
        if not hook.secret_env:
            raise ValueError(f"{where}.secret_env: a signing secret is required")
        value = env.get(hook.secret_env)
        if not value:
            held = f"{where}.secret_env: environment variable {hook.secret_env} unset"
            held += "; not sent unsigned"
            endpoints.append(
                Endpoint(url=hook.url, secrets=(), kinds=frozenset(hook.kinds), held=held)
            )
            continue
        try:
            secrets = parse_secrets(value)
            endpoints.append(Endpoint(url=hook.url, secrets=secrets, kinds=frozenset(hook.kinds)))
        except ValueError as exc:
            raise ValueError(f"{where} ({hook.secret_env}): {exc}") from None
    return tuple(endpoints)
