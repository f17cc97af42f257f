"""Identity at the edge: live keys admit their customer; unknown, revoked and expired keys are
refused alike; a trusted customer header only names a known customer."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from gatekeeper.clock import ManualClock
from gatekeeper.config import parse_config
from gatekeeper.edge.identity import Identity, IdentityFailure, identify
from gatekeeper.edge.request import EdgeRequest
from gatekeeper.engine import StaticPolicy
from gatekeeper.settings import EdgeSettings

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
EXPIRES = (T0 + timedelta(hours=1)).isoformat()


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


POLICY = parse_config(
    f"""
version: 1
currency: USD
features:
  api_access: {{type: boolean}}
plans:
  pro: {{entitlements: {{api_access: true}}}}
customers:
  acme:
    plan: pro
    api_keys:
      - {{id: live, sha256: {_sha("k-live")}}}
      - {{id: old, sha256: {_sha("k-revoked")}, revoked: true}}
      - {{id: temp, sha256: {_sha("k-temp")}, expires_at: "{EXPIRES}"}}
""",
    env={},
).policy


async def _who(key: str | None = None, **headers: str) -> Identity | IdentityFailure:
    clock = ManualClock(T0)
    sent = {"x-api-key": key} if key else {}
    request = EdgeRequest("GET", "/", {**sent, **headers})
    settings = EdgeSettings(trusted_customer_header="x-customer")
    return await identify(StaticPolicy(POLICY), request, settings, clock)


async def test_a_live_key_names_its_customer() -> None:
    assert await _who("k-live") == Identity("acme", "live", "api_key")


async def test_unknown_and_revoked_keys_are_refused_alike() -> None:
    assert await _who("k-nobody") is IdentityFailure.INVALID
    assert await _who("k-revoked") is IdentityFailure.INVALID
    assert await _who() is IdentityFailure.MISSING


async def test_a_key_works_until_it_expires_then_is_refused() -> None:
    clock = ManualClock(T0)
    policy = StaticPolicy(POLICY)
    settings = EdgeSettings()
    request = EdgeRequest("GET", "/", {"x-api-key": "k-temp"})
    assert await identify(policy, request, settings, clock) == Identity("acme", "temp", "api_key")
    clock.advance(timedelta(hours=1))
    assert await identify(policy, request, settings, clock) is IdentityFailure.INVALID


async def test_a_trusted_header_names_only_known_customers() -> None:
    assert await _who(**{"x-customer": "acme"}) == Identity("acme", None, "trusted_header")
    assert await _who(**{"x-customer": "nobody"}) is IdentityFailure.INVALID
