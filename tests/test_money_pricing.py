from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.model import PriceTier
from gatekeeper.money import MoneyError, format_nano, parse_nano, round_to_minor
from gatekeeper.pricing import tiered_cost


@pytest.mark.parametrize(
    ("text", "nano"),
    [("0.002", 2_000_000), ("500.00", 500_000_000_000), ("0.000000001", 1), ("12", 12_000_000_000)],
)
def test_parse_nano_exact(text: str, nano: int) -> None:
    assert parse_nano(text) == nano


@pytest.mark.parametrize("bad", ["0.0000000001", "abc", "NaN", "Infinity", 0.1, "1E+999999999"])
def test_parse_nano_rejects_inexact_or_float(bad: object) -> None:
    with pytest.raises(MoneyError):
        parse_nano(bad)  # type: ignore[arg-type]


def test_format_and_round() -> None:
    assert format_nano(2_000_000) == "0.002"
    assert format_nano(250_000_000_000) == "250.00"
    assert round_to_minor(12_345_000_000, "USD") == 1234  # 12.345 -> 12.34 (half-even)
    assert round_to_minor(12_355_000_000, "USD") == 1236
    assert round_to_minor(1_500_000_000, "JPY") == 2


TIERS = (PriceTier(10_000_000, 600, "0.60"), PriceTier(None, 400, "0.40"))


def test_tiers_price_only_their_units() -> None:
    assert tiered_cost(TIERS, 0, 10_000_000) == 6_000_000_000
    assert tiered_cost(TIERS, 9_999_000, 2_000) == 1_000 * 600 + 1_000 * 400
    assert tiered_cost(TIERS, 20_000_000, 5) == 2_000
    assert tiered_cost(TIERS, 100, -100) == -60_000


@given(st.integers(0, 30_000_000), st.integers(0, 30_000_000), st.integers(0, 30_000_000))
def test_tiered_cost_is_additive(already: int, a: int, b: int) -> None:
    assert tiered_cost(TIERS, already, a + b) == tiered_cost(TIERS, already, a) + tiered_cost(
        TIERS, already + a, b
    )


@given(st.integers(0, 30_000_000), st.integers(0, 30_000_000))
def test_refund_reverses_charge(already: int, q: int) -> None:
    assert tiered_cost(TIERS, already + q, -q) == -tiered_cost(TIERS, already, q)


def test_decimal_never_float() -> None:
    assert parse_nano(Decimal("0.60")) * 1 == 600_000_000
