"""Standard Webhooks signatures (https://www.standardwebhooks.com/): sign and verify.

A delivery carries three headers:

- `webhook-id`: the message id (gatekeeper: the alert or digest id, the same on every retry);
- `webhook-timestamp`: integer unix seconds of the attempt;
- `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}`,
  one per secret (current first, then previous ones during a rotation).

A secret is `whsec_` + base64 of the key bytes; the key is the decoded part. Pure: no I/O, no
clock (the caller passes `now`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from gatekeeper.settings import Secret

__all__ = [
    "SECRET_PREFIX",
    "WebhookVerificationError",
    "decode_secret",
    "generate_secret",
    "parse_secrets",
    "sign",
    "verify",
    "webhook_headers",
]

SECRET_PREFIX = "whsec_"


class WebhookVerificationError(Exception):
    """A delivery failed verification: missing headers, stale timestamp, or no signature
    matched any of the secrets."""


def decode_secret(secret: str | Secret) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional).

    Raises ValueError when the rest is not base64 or decodes to nothing.
    """
    text = secret.value if isinstance(secret, Secret) else secret
    text = text.strip()
    text = text.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not base64 after the whsec_ prefix") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def parse_secrets(value: str) -> tuple[Secret, ...]:
    """Secrets from one environment value: whitespace- or comma-separated, current first.

    Raises ValueError when there is none or one does not decode (the message never shows it).
    """
    parts = [p for p in value.replace(",", " ").split() if p]
    if not parts:
        raise ValueError("no webhook secret given")
    for index, part in enumerate(parts):
        try:
            decode_secret(part)
        except ValueError as exc:
            raise ValueError(f"webhook secret #{index + 1}: {exc}") from None
    return tuple(Secret(p) for p in parts)


def generate_secret(n_bytes: int = 24) -> str:
    """A fresh random `whsec_...` secret (for setup scripts and tests)."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(n_bytes)).decode()


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str | Secret]) -> str:
    """The `webhook-signature` value: `v1,<base64>` per secret, space-separated.

    Raises ValueError for no secrets or a secret that does not decode.
    """
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    sigs = (_mac(decode_secret(s), msg_id, timestamp, body) for s in secrets)
    return " ".join("v1," + base64.b64encode(sig).decode() for sig in sigs)


def webhook_headers(
    msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str | Secret]
) -> dict[str, str]:
    """The three Standard Webhooks headers plus `content-type: application/json`."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, secrets),
        "content-type": "application/json",
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def _signatures(value: str) -> Iterable[bytes]:
    for item in value.split():
        version, _, encoded = item.partition(",")
        if version != "v1":
            continue
        try:
            yield base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str | Secret],
    *,
    now: datetime | float,
    tolerance_s: float = 300,
) -> None:
    """Check a delivery as a receiver would; returns None when it is authentic and fresh.

    `now` is an aware datetime or unix seconds; the timestamp may differ from it by at most
    `tolerance_s` either way (older = a replay, newer = a skewed or forged clock). Header names
    are case-insensitive. Any `v1` signature matching any secret passes (rotation).
    Raises WebhookVerificationError naming the first failed check; ValueError for a secret
    that does not decode.
    """
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signature = _header(headers, "webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not integer seconds") from None
    current = now.timestamp() if isinstance(now, datetime) else float(now)
    if timestamp < current - tolerance_s:
        raise WebhookVerificationError("webhook-timestamp too old")
    if timestamp > current + tolerance_s:
        raise WebhookVerificationError("webhook-timestamp too new")
    keys = [decode_secret(s) for s in secrets]
    expected = [_mac(k, msg_id, timestamp, body) for k in keys]
    for candidate in _signatures(signature):
        if any(hmac.compare_digest(candidate, e) for e in expected):
            return
    raise WebhookVerificationError("no matching signature")
