"""Answers to Envoy (DESIGN.md §4): status, RFC 9457 problem bodies, RateLimit headers.

Transport-neutral: the gRPC ext_authz servicer and the HTTP fast path render the same Answer.
Bodies never echo internal exceptions or another customer's data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from gatekeeper.engine import Decision, LimitKind, LimitStatus, Outcome
from gatekeeper.model import NO_STRINGS, frozen_map
from gatekeeper.money import format_money, format_nano

__all__ = [
    "META_HEADER_PREFIX",
    "PROBLEM_BASE",
    "Answer",
    "answer_bad_request",
    "answer_for",
    "answer_unauthorized",
    "answer_unavailable",
    "metadata_key",
    "rate_limit_headers",
]

PROBLEM_BASE = "https://gatekeeper.dev/problems/"
# In Envoy's HTTP mode dynamic metadata travels as response headers with this prefix
# (`dynamic_metadata_from_headers`), keyed in Envoy by the full header name.
META_HEADER_PREFIX = "x-gatekeeper-meta-"
CONTENT_TYPE = "application/problem+json"

_STATUS = {
    Outcome.ALLOWED: 200,
    Outcome.UNKNOWN_CUSTOMER: 401,
    Outcome.NOT_ENTITLED: 403,
    Outcome.QUOTA_EXHAUSTED: 429,
    Outcome.RATE_LIMITED: 429,
    Outcome.SPEND_CAP: 402,
}
_TITLE = {
    Outcome.UNKNOWN_CUSTOMER: "Unauthorized",
    Outcome.NOT_ENTITLED: "Feature not included in your plan",
    Outcome.QUOTA_EXHAUSTED: "Quota exhausted",
    Outcome.RATE_LIMITED: "Rate limit exceeded",
    Outcome.SPEND_CAP: "Spending cap reached",
}


class Answer(NamedTuple):
    """status 200 = allow. Headers are (name, value) pairs with lower-case names. (An
    immutable NamedTuple: one per request on the hot path.)"""

    status: int
    outcome: str
    body: bytes = b""
    client_headers: tuple[tuple[str, str], ...] = ()  # on the denial, or added to the response
    upstream_headers: tuple[tuple[str, str], ...] = ()  # allow only: set on the upstream request
    # allow only: removed from the upstream request (config headers the customer has no value
    # for: a client's own copy must not pass for the plan's)
    upstream_headers_to_remove: tuple[str, ...] = ()
    metadata: Mapping[str, str] = NO_STRINGS  # Envoy dynamic metadata
    unavailable: bool = False  # fail-closed in gRPC mode: answer UNAVAILABLE, Envoy decides

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seconds_until(when: datetime, now: datetime) -> int:
    return max(math.ceil((when - now).total_seconds()), 0)


def _policy_name(status: LimitStatus) -> str:
    return f"{status.kind.value}-{status.feature}" if status.feature else status.kind.value


def rate_limit_headers(status: LimitStatus | None, now: datetime) -> tuple[tuple[str, str], ...]:
    """IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers) and the X-RateLimit-* trio.

    Spend caps are money, not requests: they are reported in the body, not in these headers.
    """
    if status is None or status.kind is LimitKind.SPEND:
        return ()
    reset = _seconds_until(status.reset_at, now)
    name = _policy_name(status)
    return (
        ("ratelimit-policy", f'"{name}";q={status.limit};w={status.window_s}'),
        ("ratelimit", f'"{name}";r={status.remaining};t={reset}'),
        ("x-ratelimit-limit", str(status.limit)),
        ("x-ratelimit-remaining", str(status.remaining)),
        ("x-ratelimit-reset", str(reset)),
    )


def _problem(status: int, slug: str, title: str, detail: str, **extra: object) -> bytes:
    body: dict[str, object] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(body, separators=(",", ":")).encode()


def _metadata(decision: Decision, feature: str | None = None) -> dict[str, str]:
    meta = {
        "decision_id": decision.decision_id,
        "customer": decision.customer_id,
        "decision": decision.outcome.value,
    }
    if decision.plan:
        meta["plan"] = decision.plan
    if feature or decision.feature:
        meta["feature"] = feature or decision.feature or ""
    return meta


def answer_unauthorized(reason: str) -> Answer:
    """401 for a missing, unknown or revoked key: the body never says which of the last two."""
    detail = (
        "send an API key in x-api-key or Authorization: Bearer"
        if reason == "missing_credentials"
        else "the API key is not valid"
    )
    body = _problem(401, "unauthorized", "Unauthorized", detail)
    return Answer(
        status=401,
        outcome=reason,
        body=body,
        client_headers=(("content-type", CONTENT_TYPE), ("www-authenticate", 'Bearer realm="api"')),
        metadata=frozen_map({"decision": reason}),
    )


def answer_bad_request(detail: str, customer: str) -> Answer:
    body = _problem(400, "bad-request", "Bad request", detail)
    return Answer(
        status=400,
        outcome="bad_request",
        body=body,
        client_headers=(("content-type", CONTENT_TYPE),),
        metadata=frozen_map({"decision": "bad_request", "customer": customer}),
    )


def answer_unavailable(as_status: bool) -> Answer:
    """Store down, fail-closed: UNAVAILABLE for Envoy to decide, or a 503 problem."""
    body = _problem(
        503, "unavailable", "Service unavailable", "usage limits cannot be checked right now; retry"
    )
    return Answer(
        status=503,
        outcome="store_unavailable",
        body=body,
        client_headers=(("content-type", CONTENT_TYPE), ("retry-after", "1")),
        metadata=frozen_map({"decision": "store_unavailable"}),
        unavailable=not as_status,
    )


def _denial_detail(decision: Decision, denied: LimitStatus | None, currency: str) -> str:
    if decision.outcome is Outcome.NOT_ENTITLED:
        return f"your plan does not include {decision.feature}"
    if denied is None:
        return "limit reached"
    reset = _iso(denied.reset_at)
    if denied.kind is LimitKind.SPEND:
        return (
            f"spending cap of {format_money(denied.limit, currency)} reached for this billing "
            f"period (spent {format_money(denied.used, currency)}); it resets at {reset}"
        )
    if denied.kind is LimitKind.RATE:
        return f"{denied.feature}: more than {denied.limit} per {denied.window_s}s; retry later"
    return f"{denied.feature}: {denied.used} of {denied.limit} used this period; resets at {reset}"


def _denial(decision: Decision, now: datetime, upgrade_url: str | None, currency: str) -> Answer:
    status = _STATUS[decision.outcome]
    denied = decision.denied_by
    extra: dict[str, object] = {"feature": decision.feature, "decision_id": decision.decision_id}
    headers: list[tuple[str, str]] = [("content-type", CONTENT_TYPE)]
    if decision.outcome is Outcome.NOT_ENTITLED:
        extra["upgrade_url"] = upgrade_url
        extra["upgrade_hint"] = decision.upgrade_hint
    if denied is not None:
        reset_s = _seconds_until(denied.reset_at, now)
        extra.update(reset=_iso(denied.reset_at), upgrade_url=upgrade_url)
        if denied.kind is LimitKind.SPEND:
            extra.update(
                cap=format_nano(denied.limit),
                spent=format_nano(denied.used),
                remaining=format_nano(denied.remaining),
                currency=currency,
                period_end=_iso(denied.reset_at),
            )
        else:
            extra.update(
                limit=denied.limit, remaining=denied.remaining, limit_kind=denied.kind.value
            )
            retry = math.ceil(decision.retry_after_s) if decision.retry_after_s else reset_s
            extra["retry_after"] = retry
            headers.append(("retry-after", str(max(retry, 1))))
        headers.extend(rate_limit_headers(denied, now))
    slug = decision.outcome.value.replace("_", "-")
    body = _problem(
        status, slug, _TITLE[decision.outcome], _denial_detail(decision, denied, currency), **extra
    )
    return Answer(
        status=status,
        outcome=decision.outcome.value,
        body=body,
        client_headers=tuple(headers),
        metadata=_metadata(decision),
    )


def answer_for(
    decision: Decision,
    *,
    now: datetime,
    upgrade_url: str | None = None,
    currency: str = "USD",
    settle_headers: Mapping[str, str] | None = None,
    config_headers: frozenset[str] = frozenset(),
) -> Answer:
    """The answer for an engine decision (allowed or denied).

    `config_headers`: every config feature header of the policy; on an admission those the
    customer has no value for are removed from the upstream request."""
    if decision.outcome is Outcome.UNKNOWN_CUSTOMER:
        return answer_unauthorized("invalid_credentials")
    if not decision.allowed:
        return _denial(decision, now, upgrade_url, currency)
    upstream = [("x-gatekeeper-customer", decision.customer_id)]
    if decision.plan:
        upstream.append(("x-gatekeeper-plan", decision.plan))
    upstream.append(("x-gatekeeper-decision-id", decision.decision_id))
    if decision.config_values:
        upstream.extend(sorted(decision.config_values.items()))
    meta = _metadata(decision)
    if decision.reservation_id and settle_headers:
        meta["reservation_id"] = decision.reservation_id
        meta["settle"] = ",".join(f"{f}={h}" for f, h in sorted(settle_headers.items()))
    if decision.cost_nano:
        meta["cost_nano"] = str(decision.cost_nano)
    return Answer(
        status=200,
        outcome=decision.outcome.value,
        client_headers=rate_limit_headers(decision.tightest(), now),
        upstream_headers=tuple(upstream),
        upstream_headers_to_remove=(
            tuple(sorted(h for h in config_headers if h not in decision.config_values))
            if config_headers
            else ()
        ),
        metadata=frozen_map(meta),
    )


def metadata_key(name: str) -> str:
    """`reservation_id` for both `reservation_id` (gRPC mode) and its HTTP-mode header name."""
    if name.startswith(META_HEADER_PREFIX):
        return name[len(META_HEADER_PREFIX) :].replace("-", "_")
    return name
