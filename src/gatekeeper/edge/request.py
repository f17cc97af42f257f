"""What the edge knows about one HTTP request, whichever transport brought it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from gatekeeper.model import NO_STRINGS

__all__ = ["EdgeRequest"]


class EdgeRequest(NamedTuple):
    """An immutable NamedTuple, not a frozen dataclass: one is built per request."""

    method: str
    path: str  # as received, query string included
    headers: Mapping[str, str] = NO_STRINGS  # lower-case names
    # Envoy per-route context_extensions: feature, cost, cost_header, settle_header, requires
    context: Mapping[str, str] = NO_STRINGS
    metadata_customer: str | None = None  # customer id from trusted Envoy dynamic metadata
    request_id: str = ""

    @property
    def path_only(self) -> str:
        return self.path.split("?", 1)[0]
