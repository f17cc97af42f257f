"""The domain model (DESIGN.md §3): what the policy file and the admin API describe.

Every type here is a frozen, slotted dataclass or a StrEnum. Money is integer nano-units,
quantities are integers, times are aware UTC datetimes. Nothing here does I/O; the config
loader builds these objects, the engine reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

__all__ = [
    "MAX_COUNT",
    "NO_STRINGS",
    "Anchor",
    "ApiKey",
    "CapAction",
    "Customer",
    "CustomerSpendCap",
    "Enforcement",
    "Feature",
    "FeatureType",
    "Grant",
    "MeteredEntitlement",
    "Period",
    "Plan",
    "Policy",
    "Price",
    "PriceTier",
    "RateAlgorithm",
    "RateLimit",
    "RateUnit",
    "Route",
    "RouteMatch",
    "RouteMeter",
    "SpendCap",
    "frozen_map",
]


K = TypeVar("K")
V = TypeVar("V")


def frozen_map(items: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """A read-only view of a copy of `items` (frozen dataclasses hold these, never dicts)."""
    return MappingProxyType(dict(items or {}))


MAX_COUNT = 2**53 - 1
"""The largest count or quantity anything may hold: the decision script counts in Lua numbers
(IEEE doubles), exact only up to 2**53."""

NO_STRINGS: Mapping[str, str] = frozen_map()
"""The empty read-only str -> str map: the default of NamedTuple fields (built once)."""


class FeatureType(StrEnum):
    BOOLEAN = "boolean"  # access: entitled or not
    METERED = "metered"  # counted in a unit, limited per period, priced
    CONFIG = "config"  # a per-plan value passed to the upstream in a header


class Period(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


class Anchor(StrEnum):
    CALENDAR = "calendar"  # aligned to UTC calendar boundaries
    BILLING_DAY = "billing_day"  # month starting on the customer's billing_day (UTC midnight)


class Enforcement(StrEnum):
    HARD = "hard"  # deny past the limit
    SOFT = "soft"  # admit past the limit, flag overage (hard again past overage_allowance)


class RateUnit(StrEnum):
    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"

    @property
    def seconds(self) -> int:
        return {"second": 1, "minute": 60, "hour": 3600}[self.value]


class RateAlgorithm(StrEnum):
    # Both names select the same arithmetic: GCRA is a token bucket (burst = limit) kept as
    # one timestamp instead of a count and a refill time.
    GCRA = "gcra"
    TOKEN_BUCKET = "token_bucket"


class CapAction(StrEnum):
    BLOCK = "block"  # 402 past the cap
    ALERT = "alert"  # admit and alert


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    type: FeatureType
    unit: str | None = None  # metered only, e.g. "request", "token"
    description: str = ""
    header: str | None = None  # config only: header that carries the plan's value upstream


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Units in (previous tier's up_to, up_to] cost `unit_price_nano` each.

    `unit_price_nano` is per ONE unit (the configured price divided by `per`), always an exact
    integer: a price that would need a fraction of a nano-unit is a config error.
    """

    up_to: int | None  # None = no upper bound (last tier)
    unit_price_nano: int
    unit_price: str  # as configured, per `Price.per` units, for display


@dataclass(frozen=True, slots=True)
class Price:
    """Graduated price of a metered feature; tiers restart every billing period."""

    feature: str
    currency: str
    per: int
    tiers: tuple[PriceTier, ...]

    @property
    def is_flat(self) -> bool:
        return len(self.tiers) == 1


@dataclass(frozen=True, slots=True)
class MeteredEntitlement:
    feature: str
    limit: int | None  # None = unlimited (still counted and priced)
    period: Period = Period.MONTH
    anchor: Anchor = Anchor.CALENDAR
    enforcement: Enforcement = Enforcement.HARD
    overage_allowance: int | None = None  # soft only: past limit + allowance the limit is hard
    alert_thresholds: tuple[int, ...] = ()  # percentages of limit, ascending
    # hard only: admit up to limit + grace_percent % (flagged as overage, alerted once), then deny
    grace_percent: int = 0
    alert_at: tuple[int, ...] = ()  # units used in the period, ascending (with or without limit)

    @property
    def ceiling(self) -> int | None:
        """The count past which a request is denied (None = never)."""
        if self.limit is None:
            return None
        if self.enforcement is Enforcement.HARD:
            return self.limit + self.limit * self.grace_percent // 100
        if self.overage_allowance is None:
            return None
        return self.limit + self.overage_allowance


@dataclass(frozen=True, slots=True)
class RateLimit:
    feature: str
    limit: int  # units per `per`; also the burst
    per: RateUnit
    algorithm: RateAlgorithm = RateAlgorithm.GCRA


@dataclass(frozen=True, slots=True)
class SpendCap:
    """Money cap per billing period, in nano-units of the policy currency."""

    amount_nano: int | None  # the plan's default cap (None = no default cap)
    max_customer_cap_nano: int | None = None  # ceiling for a customer's own cap
    action: CapAction = CapAction.BLOCK
    alert_thresholds: tuple[int, ...] = ()  # percentages of the cap in force, ascending
    alert_at: tuple[int, ...] = ()  # nano-units spent in the billing period, ascending

    @property
    def ceiling(self) -> int | None:
        """The highest own cap a customer may set: `max_customer_cap`, else the plan's amount
        (None = no ceiling)."""
        if self.max_customer_cap_nano is not None:
            return self.max_customer_cap_nano
        return self.amount_nano

    @property
    def blocks(self) -> bool:
        """True when the plan stops spend at a ceiling: a customer's own cap then blocks too
        (an own cap may only tighten what the plan permits, never turn the block into an alert)."""
        return self.action is CapAction.BLOCK and self.ceiling is not None


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    access: frozenset[str] = frozenset()  # boolean features granted
    config_values: Mapping[str, str] = field(default_factory=frozen_map)  # config feature -> value
    metered: Mapping[str, MeteredEntitlement] = field(default_factory=frozen_map)
    rate_limits: tuple[RateLimit, ...] = ()
    spend_cap: SpendCap | None = None

    def entitles(self, feature: str) -> bool:
        return feature in self.access or feature in self.metered or feature in self.config_values


@dataclass(frozen=True, slots=True)
class Grant:
    """Prepaid or promotional units, consumed before the plan's limit, never priced."""

    id: str  # stable: explicit, or derived from the grant's content
    feature: str
    amount: int
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    sha256: str  # lowercase hex of SHA-256 of the key; the key itself is never stored
    revoked: bool = False
    label: str = ""  # e.g. the first characters of the key, to recognise it ("gk_AbC…")
    created_at: datetime | None = None
    expires_at: datetime | None = None  # from then on the key is refused like a revoked one

    def live(self, now: Callable[[], datetime]) -> bool:
        """Usable now: not revoked and not expired (`now` is called only for a key that
        expires)."""
        if self.revoked:
            return False
        return self.expires_at is None or now() < self.expires_at


@dataclass(frozen=True, slots=True)
class CustomerSpendCap:
    amount_nano: int
    action: CapAction | None = None  # None = the plan's action


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer with its plan already merged with its overrides (`entitlements`)."""

    id: str
    plan: str
    entitlements: Plan  # the plan after per-customer overrides
    billing_day: int | None = None  # 1..31; months anchored here (clamped to short months)
    grants: tuple[Grant, ...] = ()
    spend_cap: CustomerSpendCap | None = None
    api_keys: tuple[ApiKey, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=frozen_map)  # labels: CRM id, region

    @property
    def effective_spend_cap(self) -> SpendCap | None:
        """The cap the engine enforces: the customer's own, else the plan's default.

        An own cap only ever tightens the plan's: its amount is held at the plan's ceiling
        (`SpendCap.ceiling`), and under a plan that blocks (`SpendCap.blocks`) it blocks too,
        whatever its own action says. Validation refuses such caps; this holds for those set
        before, or kept across a change of the plan or its ceiling (policy file or API).
        """
        plan_cap = self.entitlements.spend_cap
        own = self.spend_cap
        if own is None:
            return plan_cap
        base = plan_cap or SpendCap(amount_nano=None)
        ceiling = base.ceiling
        amount = own.amount_nano if ceiling is None else min(own.amount_nano, ceiling)
        action = CapAction.BLOCK if base.blocks else own.action or base.action
        return SpendCap(
            amount_nano=amount,
            max_customer_cap_nano=base.max_customer_cap_nano,
            action=action,
            alert_thresholds=base.alert_thresholds,
            alert_at=base.alert_at,
        )


@dataclass(frozen=True, slots=True)
class RouteMatch:
    method: str | None = None  # upper case; None = any
    path_prefix: str | None = None
    path_regex: str | None = None  # full match against the path (query excluded)


@dataclass(frozen=True, slots=True)
class RouteMeter:
    """How many units of `feature` one request consumes.

    Exactly one source: `cost` (constant), `cost_header` (request header, `default_cost` when
    absent), or `reserve` (an estimate reserved now, settled from `settle_header` of the
    response, or expiring at the estimate).
    """

    feature: str
    cost: int | None = None
    cost_header: str | None = None
    default_cost: int | None = None
    reserve: int | None = None
    settle_header: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    match: RouteMatch
    requires: tuple[str, ...] = ()
    meters: tuple[RouteMeter, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything the policy file declares, cross-checked. Settings live beside it."""

    version: int
    currency: str
    features: Mapping[str, Feature]
    prices: Mapping[str, Price]
    plans: Mapping[str, Plan]
    customers: Mapping[str, Customer]
    routes: tuple[Route, ...] = ()
    _key_index: Mapping[str, tuple[str, ApiKey]] = field(
        init=False, repr=False, compare=False, default_factory=frozen_map
    )

    def __post_init__(self) -> None:
        index = {
            key.sha256: (customer.id, key)
            for customer in self.customers.values()
            for key in customer.api_keys
        }
        object.__setattr__(self, "_key_index", frozen_map(index))

    def key_owner(self, sha256_hex: str) -> tuple[Customer, ApiKey] | None:
        """The customer and key record for a key hash (revoked keys included), or None."""
        hit = self._key_index.get(sha256_hex)
        if hit is None:
            return None
        return self.customers[hit[0]], hit[1]
