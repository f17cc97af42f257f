"""Who is calling: an API key (hashed lookup) or a customer id from a trusted source."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import NamedTuple

from gatekeeper.edge.request import EdgeRequest
from gatekeeper.model import Policy
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


def identify(
    policy: Policy, request: EdgeRequest, settings: EdgeSettings
) -> Identity | IdentityFailure:
    """Identify the caller. Order: API key, trusted metadata, trusted header.

    A customer header is honoured only when `settings.trusted_customer_header` names it (Envoy
    must strip it from client input); otherwise a client cannot claim to be someone else.
    """
    key = _presented_key(request)
    if key is not None:
        owner = policy.key_owner(key_hash(key))
        if owner is None or owner[1].revoked:
            return IdentityFailure.INVALID
        return Identity(owner[0].id, owner[1].id, "api_key")
    if request.metadata_customer:
        return _known(policy, request.metadata_customer, "metadata")
    header = settings.trusted_customer_header
    if header and request.headers.get(header):
        return _known(policy, request.headers[header].strip(), "trusted_header")
    return IdentityFailure.MISSING


def _known(policy: Policy, customer_id: str, source: str) -> Identity | IdentityFailure:
    if customer_id not in policy.customers:
        return IdentityFailure.INVALID
    return Identity(customer_id, None, source)
