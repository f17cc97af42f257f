"""Spending controls: a customer's own spend cap, set at run time, never above its plan's ceiling.

The cap is part of the customer's record in the directory (`spend_cap` of its document, the
policy file's own shape); setting it is one audited compare-and-set of that record, announced
on the invalidation channel, so every gatekeeper process applies it within a pub/sub delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gatekeeper.admin.customers import CustomerAdmin
from gatekeeper.admin.errors import NotFound
from gatekeeper.model import CapAction, Customer, CustomerSpendCap
from gatekeeper.money import MAX_SCRIPT_NANO, format_nano
from gatekeeper.store.customers import CustomerRecord, RecordChange

__all__ = ["CapChange", "SpendCapError", "SpendControls", "cap_ceiling"]


class SpendCapError(ValueError):
    """A cap a user asked for that cannot be set; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def cap_ceiling(customer: Customer) -> int | None:
    """The highest cap the customer may set: the plan's max_customer_cap, else its default cap."""
    plan_cap = customer.entitlements.spend_cap
    return None if plan_cap is None else plan_cap.ceiling


def _audited(cap: CustomerSpendCap | None) -> dict[str, Any] | None:
    """How the audit log shows a cap (nano-units, as it always has)."""
    if cap is None:
        return None
    return {"amount_nano": cap.amount_nano, "action": cap.action.value if cap.action else None}


def _document(cap: CustomerSpendCap) -> dict[str, str]:
    """The cap in the policy file's shape (`customers.<id>.spend_cap`)."""
    doc = {"amount": format_nano(cap.amount_nano)}
    if cap.action is not None:
        doc["action"] = cap.action.value
    return doc


@dataclass(frozen=True, slots=True)
class CapChange:
    customer: str
    old: CustomerSpendCap | None
    new: CustomerSpendCap | None
    actor: str
    at: datetime


class SpendControls:
    def __init__(self, *, admin: CustomerAdmin) -> None:
        self._admin = admin

    async def set_cap(
        self, *, actor: str, customer_id: str, amount_nano: int | None, action: CapAction | None
    ) -> CapChange:
        """Set (or with amount None, remove) the customer's own cap; audited and announced.

        Raises SpendCapError naming `amount`, `action` or `customer` when the cap is not
        allowed: above the plan's ceiling, or `alert` under a plan whose cap blocks (an own cap
        may only tighten the plan's; DESIGN §3).
        """
        customer = await self._admin.customer(customer_id)
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
        old = customer.spend_cap
        now = self._admin.clock.now()

        def compute(before: CustomerRecord | None) -> RecordChange[None]:
            if before is None:
                raise NotFound(f"no customer {customer_id!r}")
            doc = dict(before.doc)
            if new is None:
                doc.pop("spend_cap", None)
            else:
                doc["spend_cap"] = _document(new)
            audit = self._admin.audit(
                actor,
                "spend_cap.set",
                f"customer:{customer_id}",
                _audited(old),
                _audited(new),
            )
            return RecordChange(None, self._admin.record_for(customer_id, doc, before), audit)

        await self._admin.commit(customer_id, compute)
        return CapChange(customer_id, old, new, actor, now)
