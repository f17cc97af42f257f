"""Settings of the CloudEvents forwarder (not yet wired into `gatekeeper.settings`).

The lead wires this into `Settings` as a `forwarder` section (env `GATEKEEPER_FORWARDER_<FIELD>`);
until then the composition root builds it directly. `url` unset = no forwarder runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.settings import Secret

__all__ = ["ForwarderSettings"]


@dataclass(frozen=True, slots=True)
class ForwarderSettings:
    """Where and how usage events leave gatekeeper as CloudEvents 1.0 over HTTP.

    url: the ingest endpoint, POSTed `application/cloudevents-batch+json` (e.g. OpenMeter's
        `/api/v1/events`).
    source: the CloudEvents `source` attribute of every event (a URI-reference).
    batch_size: at most this many events per POST (>= 1).
    max_wait_ms: a partial batch is sent once this long has passed since the read began (>= 1).
    max_attempts: POSTs per batch before giving up for now (>= 1); the batch stays pending in
        Redis and is sent again later, never dropped.
    timeout_s: total time allowed for one POST, connect to last body byte (> 0).
    backoff_base_ms / backoff_max_ms: exponential backoff with full jitter between attempts:
        uniform(0, min(max, base * 2**attempt)); a `Retry-After` answer replaces it (capped at
        `retry_after_max_s`).
    auth_token: sent as `Authorization: Bearer <token>` when set; its repr is masked.

    Raises ValueError on construction when a bound is out of range.
    """

    url: str
    source: str = "gatekeeper"
    batch_size: int = 100
    max_wait_ms: int = 1_000
    max_attempts: int = 5
    timeout_s: float = 10.0
    backoff_base_ms: int = 200
    backoff_max_ms: int = 30_000
    retry_after_max_s: float = 300.0
    auth_token: Secret | None = None

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("forwarder.url must not be empty")
        if not self.source:
            raise ValueError("forwarder.source must not be empty")
        for name in ("batch_size", "max_wait_ms", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"forwarder.{name} must be >= 1, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise ValueError(f"forwarder.timeout_s must be > 0, got {self.timeout_s}")
        if self.backoff_base_ms < 0 or self.backoff_max_ms < self.backoff_base_ms:
            raise ValueError("forwarder backoff needs 0 <= backoff_base_ms <= backoff_max_ms")
        if self.retry_after_max_s < 0:
            raise ValueError("forwarder.retry_after_max_s must be >= 0")
