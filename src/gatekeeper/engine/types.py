"""Values crossing the engine boundary: requests in, decisions out (no transport types)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from gatekeeper.model import NO_STRINGS, frozen_map

__all__ = [
    "Decision",
    "DecisionRequest",
    "GrantBalance",
    "LimitKind",
    "LimitStatus",
    "MeterRequest",
    "Outcome",
    "SettleResult",
    "SettleStatus",
]


class Outcome(StrEnum):
    """Stable outcome codes (also metric labels). The edge maps them to 401/402/403/429."""

    ALLOWED = "allowed"
    UNKNOWN_CUSTOMER = "unknown_customer"  # 401
    NOT_ENTITLED = "not_entitled"  # 403
    QUOTA_EXHAUSTED = "quota_exhausted"  # 429
    RATE_LIMITED = "rate_limited"  # 429
    SPEND_CAP = "spend_cap"  # 402


class LimitKind(StrEnum):
    QUOTA = "quota"
    RATE = "rate"
    SPEND = "spend"


class _Meter(NamedTuple):
    feature: str
    quantity: int
    reserve: bool = False


class MeterRequest(_Meter):
    """`quantity` units of a metered feature; `reserve` marks an estimate to settle later.

    An immutable NamedTuple (built per meter of every request on the hot path) that refuses a
    negative quantity."""

    __slots__ = ()

    def __new__(cls, feature: str, quantity: int, reserve: bool = False) -> MeterRequest:
        if quantity < 0:
            raise ValueError(f"quantity of {feature!r} must be >= 0, got {quantity}")
        return _Meter.__new__(cls, feature, quantity, reserve)


class DecisionRequest(NamedTuple):
    """One request's question to the engine (an immutable NamedTuple: built per request on
    the hot path)."""

    customer_id: str
    requires: tuple[str, ...] = ()  # features the caller must be entitled to
    meters: tuple[MeterRequest, ...] = ()  # metered features consumed
    idempotency_key: str | None = None  # same key within the TTL: first decision, no charge
    request_id: str = ""
    # what the request is beyond its usage, as the caller saw it (e.g. "POST /v1/chat"): an
    # idempotency key replays the first decision only for the same route and the same usage
    route: str = ""


@dataclass(frozen=True, slots=True)
class GrantBalance:
    """One of a customer's grants now: units granted, consumed, left (0 once expired: an
    expired grant is never drawn on again)."""

    id: str
    feature: str
    amount: int
    used: int
    remaining: int
    expires_at: datetime | None
    expired: bool


class LimitStatus(NamedTuple):
    """One counter after the decision: `used` and `remaining` in units (nano-units for spend).

    An immutable NamedTuple, not a frozen dataclass: one is built per counter of every
    decision on the hot path, ~4x faster (as engine/ports.py's ReplyRow)."""

    kind: LimitKind
    feature: str | None  # None for spend
    limit: int
    used: int
    remaining: int
    reset_at: datetime  # when the window ends (quota, spend) or the bucket is full again (rate)
    window_s: int


class Decision(NamedTuple):
    """The engine's answer (an immutable NamedTuple: one per request on the hot path)."""

    decision_id: str
    outcome: Outcome
    customer_id: str
    plan: str | None = None
    feature: str | None = None  # the feature a denial is about
    limits: tuple[LimitStatus, ...] = ()
    denied_by: LimitStatus | None = None
    retry_after_s: float | None = None
    cost_nano: int = 0
    overage: tuple[str, ...] = ()  # soft-limited features now past their limit
    reservation_id: str | None = None
    replayed: bool = False  # answered from the idempotency record
    config_values: Mapping[str, str] = NO_STRINGS  # header -> value
    upgrade_hint: str | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED

    def tightest(self) -> LimitStatus | None:
        """The counter closest to exhaustion (for RateLimit headers), denial first.

        Among admitted counters only quotas and rate limits count: a spend cap is money, told
        in the body, never in RateLimit headers, and must not hide the quota closest to its end.
        """
        if self.denied_by is not None:
            return self.denied_by
        best: LimitStatus | None = None
        best_key = (0.0, 0)
        for s in self.limits:
            if s.limit > 0 and s.kind is not LimitKind.SPEND:
                key = (s.remaining / s.limit, s.remaining)
                if best is None or key < best_key:  # the first of equals, as min() keeps
                    best, best_key = s, key
        return best


class SettleStatus(StrEnum):
    SETTLED = "settled"
    EXPIRED = "expired"  # stands at its estimate
    UNKNOWN = "unknown"  # never reserved (or its record, kept for retries, expired)


@dataclass(frozen=True, slots=True)
class SettleResult:
    status: SettleStatus
    deltas: Mapping[str, int] = field(default_factory=frozen_map)  # feature -> actual - estimate
    cost_delta_nano: int = 0
