"""The decision engine: plans counters for a request and has the store decide atomically."""

from gatekeeper.engine.engine import DecisionEngine, DecisionIds, new_decision_id
from gatekeeper.engine.ports import DecisionStore, PolicySource
from gatekeeper.engine.types import (
    Decision,
    DecisionRequest,
    LimitKind,
    LimitStatus,
    MeterRequest,
    Outcome,
    SettleResult,
    SettleStatus,
)
from gatekeeper.model import Policy

__all__ = [
    "Decision",
    "DecisionEngine",
    "DecisionIds",
    "DecisionRequest",
    "DecisionStore",
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
    """A PolicySource whose policy is replaced wholesale by `replace()`."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def current(self) -> Policy:
        return self._policy

    def replace(self, policy: Policy) -> None:
        self._policy = policy
