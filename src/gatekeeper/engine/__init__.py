"""The decision engine: plans counters for a request and has the store decide atomically."""

from gatekeeper.engine.engine import DecisionEngine, DecisionIds, new_decision_id
from gatekeeper.engine.ports import DecisionStore, PolicySource
from gatekeeper.engine.types import (
    Decision,
    DecisionRequest,
    GrantBalance,
    LimitKind,
    LimitStatus,
    MeterRequest,
    Outcome,
    SettleResult,
    SettleStatus,
)
from gatekeeper.model import ApiKey, Customer, Policy

__all__ = [
    "Decision",
    "DecisionEngine",
    "DecisionIds",
    "DecisionRequest",
    "DecisionStore",
    "GrantBalance",
    "LimitKind",
    "LimitStatus",
    "MeterRequest",
    "Outcome",
    "PolicySource",
    "SettleResult",
    "SettleStatus",
    "StaticPolicy",
    "new_decision_id",
]


class StaticPolicy:
    """A PolicySource whose policy, customers included, is held in memory and replaced
    wholesale by `replace()` (tests, embedding the engine in a program)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def current(self) -> Policy:
        return self._policy

    def replace(self, policy: Policy) -> None:
        self._policy = policy

    def cached_customer(self, customer_id: str) -> Customer | None:
        return self._policy.customers.get(customer_id)

    async def customer(self, customer_id: str) -> Customer | None:
        return self._policy.customers.get(customer_id)

    def cached_key_owner(self, sha256_hex: str) -> tuple[Customer, ApiKey] | None:
        return self._policy.key_owner(sha256_hex)

    async def key_owner(self, sha256_hex: str) -> tuple[Customer, ApiKey] | None:
        return self._policy.key_owner(sha256_hex)
