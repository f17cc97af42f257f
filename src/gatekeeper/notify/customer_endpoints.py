"""Customers' own webhook endpoints, set through the API (`/v1/customers/{id}/webhooks`) and
kept in each customer's directory record, as notifier Endpoints that receive only their
customer's alerts (looked up per alert's customer, never all at once)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from gatekeeper.directory.live import LiveDirectory
from gatekeeper.notify.settings import Endpoint
from gatekeeper.settings import Secret

__all__ = ["CustomerEndpoints", "endpoints_of"]

log = logging.getLogger(__name__)


def endpoints_of(webhooks: Mapping[str, tuple[Mapping[str, object], ...]]) -> list[Endpoint]:
    """Endpoints of every customer's hooks; a malformed one is logged and left out."""
    found: list[Endpoint] = []
    for customer, hooks in webhooks.items():
        for hook in hooks:
            try:
                kinds = hook.get("kinds") or []
                found.append(
                    Endpoint(
                        url=str(hook["url"]),
                        secrets=(Secret(str(hook["secret"])),),
                        kinds=frozenset(str(k) for k in kinds)
                        if isinstance(kinds, list)
                        else frozenset(),
                        customer=customer,
                    )
                )
            except (KeyError, ValueError) as exc:
                log.error("customer %s webhook %s left out: %s", customer, hook.get("id"), exc)
    return found


class CustomerEndpoints:
    """`await CustomerEndpoints(directory)(customer)`: that customer's own endpoints, from its
    record in the directory (held by the directory's bounded cache, dropped on its change)."""

    def __init__(self, directory: LiveDirectory) -> None:
        self._directory = directory

    async def __call__(self, customer: str) -> list[Endpoint]:
        record = await self._directory.record(customer)
        if record is None or not record.webhooks:
            return []
        return endpoints_of({customer: record.webhooks})
