"""Spending controls: a customer's own spend cap, set at run time, never above its plan's ceiling.

Overrides live in Redis (one hash), every change is audited (who, when, old, new) and announced
on the invalidation channel, so every gatekeeper process applies it within a pub/sub delivery.
`LivePolicy` is the PolicySource the engine reads: the policy file with the overrides applied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from redis.asyncio import Redis

from gatekeeper.clock import Clock
from gatekeeper.config.compose import Changes, compose_policy
from gatekeeper.config.errors import ConfigError
from gatekeeper.config.yamlsrc import YMap, key_path
from gatekeeper.model import ApiKey, CapAction, Customer, CustomerSpendCap, Policy, frozen_map
from gatekeeper.money import MAX_SCRIPT_NANO, format_nano
from gatekeeper.store.directory import AuditRecord
from gatekeeper.store.keys import KeySpace

__all__ = ["LivePolicy", "SpendCapError", "SpendControls", "apply_overrides", "cap_ceiling"]

log = logging.getLogger(__name__)


class SpendCapError(ValueError):
    """A cap a user asked for that cannot be set; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def cap_ceiling(customer: Customer) -> int | None:
    """The highest cap the customer may set: the plan's max_customer_cap, else its default cap."""
    plan_cap = customer.entitlements.spend_cap
    return None if plan_cap is None else plan_cap.ceiling


def apply_overrides(policy: Policy, caps: Mapping[str, CustomerSpendCap | None]) -> Policy:
    """The policy with customers' own caps replaced (None in `caps` = back to the plan default)."""
    if not caps:
        return policy
    customers = dict(policy.customers)
    for customer_id, cap in caps.items():
        customer = customers.get(customer_id)
        if customer is not None:
            customers[customer_id] = replace(customer, spend_cap=cap)
    return replace(policy, customers=frozen_map(customers))


class LivePolicy:
    """PolicySource: the file's policy with the directory's changes (plans and customers set
    through the API) composed in and customers' own caps applied; rebuilt only on a change.

    A directory entry that no longer fits the file (say its plan was deleted from the file) is
    left out, logged with its reason, and kept in Redis for an operator to fix.
    """

    def __init__(self, base: Policy, root: YMap | None = None) -> None:
        self._file = base
        self._root = root
        self._changes = Changes()
        self._caps: dict[str, CustomerSpendCap | None] = {}
        self.rejected: dict[str, str] = {}  # "customers.x" -> why it was left out
        self._composed = base
        self._merged = base

    def current(self) -> Policy:
        return self._merged

    def cached_customer(self, customer_id: str) -> Customer | None:
        return self._merged.customers.get(customer_id)

    async def customer(self, customer_id: str) -> Customer | None:
        return self._merged.customers.get(customer_id)

    def cached_key_owner(self, sha256_hex: str) -> tuple[Customer, ApiKey] | None:
        return self._merged.key_owner(sha256_hex)

    async def key_owner(self, sha256_hex: str) -> tuple[Customer, ApiKey] | None:
        return self._merged.key_owner(sha256_hex)

    @property
    def base(self) -> Policy:
        """The policy before customers' own caps: the file plus the directory's changes."""
        return self._composed

    @property
    def file_policy(self) -> Policy:
        return self._file

    @property
    def root(self) -> YMap | None:
        return self._root

    @property
    def changes(self) -> Changes:
        return self._changes

    def replace(self, base: Policy, root: YMap | None = None) -> None:
        self._file, self._root = base, root if root is not None else self._root
        self._recompose()

    def set_changes(self, changes: Changes) -> None:
        self._changes = changes
        self._recompose()

    def set_caps(self, caps: Mapping[str, CustomerSpendCap | None]) -> None:
        self._caps = dict(caps)
        self._merged = apply_overrides(self._composed, self._caps)

    def _recompose(self) -> None:
        changes, self.rejected = self._changes, {}
        composed = self._file
        if changes and self._root is not None:
            for _ in range(len(changes.plans) + len(changes.customers) + 1):
                try:
                    composed = compose_policy(self._root, changes)
                    break
                except ConfigError as exc:
                    changes = self._without_faulty(changes, exc)
            else:  # pragma: no cover - every round removes at least one entry
                composed = self._file
        self._composed = composed
        self._merged = apply_overrides(composed, self._caps)

    def _without_faulty(self, changes: Changes, exc: ConfigError) -> Changes:
        """`changes` minus every entry an issue points into (all entries if none is named)."""
        plans, customers = dict(changes.plans), dict(changes.customers)
        named = False
        for issue in exc.issues:
            for section, entries in (("plans", plans), ("customers", customers)):
                for name in list(entries):
                    prefix = key_path(section, name)
                    if issue.path == prefix or issue.path.startswith((prefix + ".", prefix + "[")):
                        entries.pop(name)
                        self.rejected[prefix] = str(issue)
                        named = True
        if not named:
            for section, entries in (("plans", plans), ("customers", customers)):
                for name in entries:
                    self.rejected[key_path(section, name)] = str(exc)
            plans, customers = {}, {}
        for where, why in self.rejected.items():
            log.error("directory entry %s left out: %s", where, why)
        return Changes(plans=frozen_map(plans), customers=frozen_map(customers))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _encode(cap: CustomerSpendCap | None) -> str:
    if cap is None:
        return json.dumps(None)
    return json.dumps(
        {"amount_nano": cap.amount_nano, "action": cap.action.value if cap.action else None}
    )


def _decode(raw: str) -> CustomerSpendCap | None:
    data = json.loads(raw)
    if data is None:
        return None
    action = CapAction(data["action"]) if data.get("action") else None
    return CustomerSpendCap(int(data["amount_nano"]), action)


@dataclass(frozen=True, slots=True)
class CapChange:
    customer: str
    old: CustomerSpendCap | None
    new: CustomerSpendCap | None
    actor: str
    at: datetime


class SpendControls:
    def __init__(self, *, redis: Redis, keys: KeySpace, policy: LivePolicy, clock: Clock) -> None:
        self._redis = redis
        self._keys = keys
        self._policy = policy
        self._clock = clock

    async def load(self) -> dict[str, CustomerSpendCap | None]:
        """Every override in Redis, applied to the live policy. Raises redis errors."""
        raw = await self._redis.hgetall(self._keys.spend_cap_overrides())
        caps = {_text(k): _decode(_text(v)) for k, v in raw.items()}
        self._policy.set_caps(caps)
        return caps

    async def set_cap(
        self, *, actor: str, customer_id: str, amount_nano: int | None, action: CapAction | None
    ) -> CapChange:
        """Set (or with amount None, remove) the customer's own cap; audited and announced.

        Raises SpendCapError naming `amount`, `action` or `customer` when the cap is not
        allowed: above the plan's ceiling, or `alert` under a plan whose cap blocks (an own cap
        may only tighten the plan's; DESIGN §3).
        """
        customer = self._policy.base.customers.get(customer_id)
        if customer is None:
            raise SpendCapError("customer", f"unknown customer {customer_id!r}")
        new = None if amount_nano is None else CustomerSpendCap(amount_nano, action)
        plan_cap = customer.entitlements.spend_cap
        if amount_nano is not None and action is CapAction.ALERT and plan_cap and plan_cap.blocks:
            raise SpendCapError(
                "action",
                f"plan '{customer.plan}' blocks at its cap, so your own cap blocks too: "
                "send action block (or leave it out); spend alerts are set with alert-thresholds",
            )
        if amount_nano is not None:
            if amount_nano < 0:
                raise SpendCapError("amount", "amount must be zero or more")
            ceiling = cap_ceiling(customer)
            if ceiling is not None and amount_nano > ceiling:
                raise SpendCapError(
                    "amount",
                    f"{format_nano(amount_nano)} is above the plan's ceiling of "
                    f"{format_nano(ceiling)}",
                )
            if amount_nano >= MAX_SCRIPT_NANO:
                raise SpendCapError("amount", "amount is too large")
        old = self._policy.current().customers[customer_id].spend_cap
        now = self._clock.now()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.spend_cap_overrides(), customer_id, _encode(new))
            record = AuditRecord(
                actor=actor,
                what="spend_cap.set",
                target=f"customer:{customer_id}",
                before=json.loads(_encode(old)),
                after=json.loads(_encode(new)),
                at=now,
            )
            pipe.xadd(self._keys.audit_stream(), record.fields())  # type: ignore[arg-type]
            pipe.publish(self._keys.invalidate_channel(), f"spend_cap:{customer_id}")
            await pipe.execute()
        await self.load()
        return CapChange(customer_id, old, new, actor, now)
