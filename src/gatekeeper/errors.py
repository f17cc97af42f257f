"""Errors a caller must tell apart. Mapped to statuses once, at the transport edge."""

from __future__ import annotations

__all__ = ["GatekeeperError", "StoreUnavailable"]


class GatekeeperError(Exception):
    """Base of gatekeeper's own errors."""


class StoreUnavailable(GatekeeperError):
    """The store (Redis) could not answer. `transient` = worth retrying / failing open."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient
