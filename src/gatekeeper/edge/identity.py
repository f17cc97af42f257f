"""Who is calling: an API key (hashed lookup) or a customer id from a trusted source."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import NamedTuple

from gatekeeper.clock import Clock
from gatekeeper.edge.request import EdgeRequest
from gatekeeper.engine.ports import PolicySource
from gatekeeper.settings import EdgeSettings

__all__ = ["Identity", "IdentityFailure", "identify", "key_hash"]


class IdentityFailure(StrEnum):
    MISSING = "missing_credentials"
    INVALID = "invalid_credentials"  # unknown or revoked key: the answer never says which


class Identity(NamedTuple):
    """Who is calling (an immutable NamedTuple: one per request)."""

    customer_id: str
    key_id: str | None  # None when identified by a trusted header or metadata
    source: str  # api_key | trusted_header | metadata


def key_hash(key: str) -> str:
    """Lower-case hex SHA-256 of an API key: what the policy stores instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def _presented_key(request: EdgeRequest) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def identify(
    source: PolicySource, request: EdgeRequest, settings: EdgeSettings, clock: Clock
) -> Identity | IdentityFailure:
    """Identify the caller. Order: API key, trusted metadata, trusted header.

    A revoked or expired key is INVALID, like an unknown one. A customer header is honoured
    only when `settings.trusted_customer_header` names it (Envoy must strip it from client
    input); otherwise a client cannot claim to be someone else. Raises StoreUnavailable.
    """
    key = _presented_key(request)
    if key is not None:
        digest = key_hash(key)
        owner = source.cached_key_owner(digest) or await source.key_owner(digest)
        if owner is None or not owner[1].live(clock.now):
            return IdentityFailure.INVALID
        return Identity(owner[0].id, owner[1].id, "api_key")
    if request.metadata_customer:
        return await _known(source, request.metadata_customer, "metadata")
    header = settings.trusted_customer_header
    if header and request.headers.get(header):
        return await _known(source, request.headers[header].strip(), "trusted_header")
    return IdentityFailure.MISSING


async def _known(source: PolicySource, customer_id: str, kind: str) -> Identity | IdentityFailure:
    customer = source.cached_customer(customer_id) or await source.customer(customer_id)
    if customer is None:
        return IdentityFailure.INVALID
    return Identity(customer_id, None, kind)
