"""Who is calling: `Authorization: Bearer <token>` (or `?access_token=` on `/stream` paths,
for EventSource) resolved to an Actor.

Order: the bootstrap operator token (GATEKEEPER_ADMIN_TOKEN, role admin), then tokens created
through the API (stored as SHA-256), then a customer's own API key (a customer-scoped token).
Revoked, expired and unknown secrets are refused alike.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from gatekeeper.access import Actor, Role, TokenRecord, secret_hash
from gatekeeper.clock import Clock
from gatekeeper.model import ApiKey, Customer
from gatekeeper.settings import Secret

__all__ = ["ACTOR", "Authenticator", "bearer"]

ACTOR = web.RequestKey("actor", Actor)  # set by the API middleware on every /v1 request


def bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return token
    if request.path.endswith("/stream"):
        return request.query.get("access_token") or None
    return None


class Authenticator:
    def __init__(
        self,
        *,
        bootstrap: Secret | None,
        token: Callable[[str], TokenRecord | None],
        key_owner: Callable[[str], Awaitable[tuple[Customer, ApiKey] | None]],
        clock: Clock,
    ) -> None:
        self._bootstrap = bootstrap
        self._token = token
        self._key_owner = key_owner
        self._clock = clock

    async def actor(self, secret: str) -> Actor | None:
        """Raises StoreUnavailable when the directory cannot be read."""
        if self._bootstrap is not None and hmac.compare_digest(
            secret.encode(), self._bootstrap.value.encode()
        ):
            return Actor(Role.ADMIN, None, "bootstrap")
        record = self._token(secret)
        if record is not None:
            return Actor(record.role, record.customer, f"token:{record.id}")
        owner = await self._key_owner(secret_hash(secret))
        if owner is None or not owner[1].live(self._clock.now):
            return None
        return Actor(Role.CUSTOMER, owner[0].id, f"key:{owner[1].id}")
