"""Errors a caller must tell apart. Mapped to statuses once, at the transport edge."""

from __future__ import annotations

__all__ = ["GatekeeperError", "StoreUnavailable"]


class GatekeeperError(Exception):
    """Base of gatekeeper's own errors."""


class StoreUnavailable(GatekeeperError):
    """The store (Redis) could not answer. `transient` = worth retrying / failing open.

    `sent`: the call may have reached the store (False only where it certainly did not: no
    connection to send it on). `decision_id`: set by the decision store when the call was a
    decision that may have been applied without its reply arriving; the decision is then held
    to be voided unless the caller keeps it (engine.DecisionEngine.keep_lost)."""

    def __init__(self, message: str, *, transient: bool = True, sent: bool = True) -> None:
        super().__init__(message)
        self.transient = transient
        self.sent = sent
        self.decision_id: str | None = None
