"""Exact money: decimal strings in major units <-> integer nano-units (1e-9 of the major unit).

Floats never touch money. A value that does not convert exactly is rejected with `MoneyError`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

__all__ = [
    "MAX_SCRIPT_NANO",
    "NANO",
    "MoneyError",
    "format_nano",
    "minor_units",
    "parse_nano",
    "round_to_minor",
]

NANO = 10**9
# Lua numbers are IEEE doubles: integers are exact up to 2**53. Every amount the decision
# script adds or compares must stay below this (about 9,007,199 major units per period).
MAX_SCRIPT_NANO = 2**53
MAX_DIGITS = 30  # digits before the decimal point of any amount read (far beyond any bound)

# ISO 4217 minor-unit exponents for currencies that do not use 2 decimals.
_MINOR_EXPONENT = {
    "BHD": 3,
    "CLP": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "TND": 3,
    "UGX": 0,
    "VND": 0,
    "XAF": 0,
    "XOF": 0,
}


class MoneyError(ValueError):
    """A decimal amount that cannot be held exactly in nano-units."""


def parse_nano(text: str | int | Decimal) -> int:
    """Parse a decimal amount in major units ("0.002") into exact nano-units (2_000_000).

    Raises MoneyError when the text is not a finite decimal, has more than 9 decimals, or more
    than MAX_DIGITS digits before the point.
    """
    if isinstance(text, bool | float):
        raise MoneyError('must be a decimal string such as "0.002", not a float')
    try:
        value = Decimal(text) if not isinstance(text, Decimal) else text
    except (InvalidOperation, ValueError):
        raise MoneyError(f"{text!r} is not a decimal number") from None
    if not value.is_finite():
        raise MoneyError(f"{text!r} is not a finite number")
    if value.adjusted() > MAX_DIGITS:  # before scaling: 1E+999999999 overflows the context
        raise MoneyError(f"{text!r} is too large (more than {MAX_DIGITS} digits before the point)")
    scaled = value * NANO
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{text!r} has more than 9 decimals: not exact in nano-units")
    return int(scaled)


def format_nano(nano: int) -> str:
    """Nano-units as a plain decimal string in major units, without trailing zeros beyond 2."""
    value = Decimal(nano) / NANO
    text = format(value.normalize(), "f")
    if "." not in text:
        return text + ".00"
    whole, frac = text.split(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def minor_units(currency: str) -> int:
    """Decimal places of the currency's minor unit (USD 2, JPY 0, KWD 3)."""
    return _MINOR_EXPONENT.get(currency.upper(), 2)


def round_to_minor(nano: int, currency: str) -> int:
    """Round nano-units to the currency's minor unit, half-even; returns minor units (cents)."""
    exponent = minor_units(currency)
    minor = Decimal(nano) / (10 ** (9 - exponent))
    return int(minor.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
