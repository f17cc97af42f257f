"""The per-second budgets of frames a client may not flood."""

from __future__ import annotations

from gatekeeper.net.guards import Budget


def test_a_budget_allows_a_burst_of_its_rate_then_refills_at_it() -> None:
    budget = Budget(10, now=100.0)
    assert all(budget.spend(100.0) for _ in range(10))
    assert not budget.spend(100.0)
    assert not budget.spend(100.05)  # half a token back
    assert budget.spend(100.2)  # two back, one spent
    assert budget.spend(100.2)
    assert not budget.spend(100.2)
    assert all(budget.spend(200.0) for _ in range(10))  # never more than one burst saved
    assert not budget.spend(200.0)
