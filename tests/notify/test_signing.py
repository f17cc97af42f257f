"""Standard Webhooks signatures: gatekeeper's signer against the reference verifier, and
gatekeeper's own verifier against tampering, wrong secrets and replays."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gatekeeper.notify import (
    WebhookVerificationError as OwnError,
)
from gatekeeper.notify import (
    decode_secret,
    generate_secret,
    parse_secrets,
    sign,
    verify,
    webhook_headers,
)
from gatekeeper.settings import Secret

# The example of the Standard Webhooks spec / reference library test vectors.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_matches_the_spec_vector_and_the_reference_signer() -> None:
    assert sign(SPEC_ID, SPEC_TS, SPEC_BODY, [SPEC_SECRET]) == SPEC_SIG
    ref = Webhook(SPEC_SECRET).sign(
        SPEC_ID, datetime.fromtimestamp(SPEC_TS, tz=UTC), SPEC_BODY.decode()
    )
    assert ref == SPEC_SIG


def _both_reject(headers: dict[str, str], body: bytes, secret: str, now: float) -> None:
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)
    with pytest.raises(OwnError):
        verify(headers, body, [secret], now=now)


def test_both_verifiers_accept_a_fresh_delivery_and_reject_tampering_secret_and_replay() -> None:
    secret, other = generate_secret(), generate_secret()
    now = int(time.time())
    body = b'{"type":"gatekeeper.alert.threshold","id":"d1.a1"}'
    headers = webhook_headers("d1.a1", now, body, [secret])
    assert Webhook(secret).verify(body, headers)["id"] == "d1.a1"
    verify(headers, body, [secret], now=now)

    _both_reject(headers, body.replace(b"d1.a1", b"d1.a2"), secret, now)  # tampered body
    _both_reject(headers, body, other, now)  # wrong secret
    old = webhook_headers("d1.a1", now - 301, body, [secret])  # replayed 5 min later
    _both_reject(old, body, secret, now)
    new = webhook_headers("d1.a1", now + 301, body, [secret])  # from the future
    _both_reject(new, body, secret, now)
    swapped = dict(headers, **{"webhook-id": "d1.a9"})  # signature bound to the id
    _both_reject(swapped, body, secret, now)
    with pytest.raises(OwnError, match="missing header"):
        verify(
            {k: v for k, v in headers.items() if k != "webhook-signature"}, body, [secret], now=now
        )


def test_rotation_signs_with_every_secret_and_either_verifies() -> None:
    current, previous = generate_secret(), generate_secret()
    now = int(time.time())
    body = b"{}"
    headers = webhook_headers("x", now, body, [current, previous])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (current, previous):
        Webhook(secret).verify(body, headers)
        verify(headers, body, [secret], now=now)
    verify(headers, body, [generate_secret(), previous], now=datetime.fromtimestamp(now, UTC))


def test_tolerance_is_configurable_and_case_insensitive_headers() -> None:
    secret = generate_secret()
    headers = {k.upper(): v for k, v in webhook_headers("i", 1_000, b"b", [secret]).items()}
    verify(headers, b"b", [secret], now=1_000 + 3_600, tolerance_s=3_600)
    with pytest.raises(OwnError, match="too old"):
        verify(headers, b"b", [secret], now=1_000 + 3_601, tolerance_s=3_600)


def test_secret_parsing() -> None:
    raw = base64.b64encode(b"k" * 24).decode()
    assert decode_secret("whsec_" + raw) == b"k" * 24 == decode_secret(Secret(raw))
    assert len(parse_secrets(f"whsec_{raw}, whsec_{raw}")) == 2
    for bad in ("", "whsec_", "whsec_not base64!"):
        with pytest.raises(ValueError):
            parse_secrets(bad)
    assert "k" not in repr(parse_secrets("whsec_" + raw))
