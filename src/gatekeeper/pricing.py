"""Graduated pricing in exact nano-units (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from gatekeeper.model import PriceTier

__all__ = ["tiered_cost"]


def tiered_cost(tiers: Sequence[PriceTier], already: int, quantity: int) -> int:
    """Cost in nano-units of `quantity` more units when `already` units of the period are used.

    Each tier prices only the units inside it. A negative quantity prices the refund of the
    last |quantity| units (returns a negative amount). Raises ValueError on already < 0.
    """
    if already < 0:
        raise ValueError("already must be >= 0")
    if quantity < 0:
        return -tiered_cost(tiers, max(already + quantity, 0), min(-quantity, already))
    low, high = already, already + quantity
    cost = 0
    lower = 0
    for tier in tiers:
        upper = tier.up_to
        top = high if upper is None else min(high, upper)
        bottom = max(low, lower)
        if top > bottom:
            cost += (top - bottom) * tier.unit_price_nano
        if upper is None or upper >= high:
            break
        lower = upper
    return cost
