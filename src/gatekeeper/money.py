"""Exact money: decimal strings in major units <-> integer nano-units (1e-9 of the major unit).

Floats never touch money. A value that does not convert exactly is rejected with `MoneyError`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

__all__ = [
    "MAX_SCRIPT_NANO",
    "NANO",
    "MoneyError",
    "format_money",
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


# Currencies shown with a symbol; every other one as its code before the amount ("CHF 1.10").
# The dashboard's money.js holds the same table and rules (a test compares the two).
_SYMBOL = {"USD": "$", "EUR": "\u20ac", "GBP": "\u00a3", "JPY": "\u00a5"}


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
    """Nano-units as an exact decimal string in major units, without trailing zeros beyond 2:
    the API's and the webhooks' money fields (data, read back exactly). What a person reads
    is `format_money`."""
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


def format_money(nano: int, currency: str, *, exact: bool = False, plain: bool = False) -> str:
    """Nano-units as a person reads them, the one form of every CLI, dashboard, export and
    message: "$1.10", "\u00a5120", "KWD 0.682", "-\u20ac1,234.50".

    An amount has the currency's minor units (`minor_units`), rounded half-even as invoice
    lines are. More decimals only where the amount itself needs them: with `exact` (a unit
    price, "$0.0004971": every digit, at least the minor units) and for an amount that is not
    zero but would round to zero ("$0.004", never "$0.00" for something spent). `plain`: no
    symbol or code and no thousands separator ("1234.50", for CSV/JSON next to a currency
    column). Raises nothing for any int.
    """
    m = minor_units(currency)
    if exact or (nano != 0 and round_to_minor(nano, currency) == 0):
        frac = f"{abs(nano) % NANO:09d}".rstrip("0")
        value = Decimal(nano).scaleb(-9)
        digits = max(m, len(frac))
    else:
        value = Decimal(round_to_minor(nano, currency)).scaleb(-m)
        digits = m
    sign = "-" if value < 0 else ""
    number = f"{abs(value):{'' if plain else ','}.{digits}f}"
    if plain:
        return sign + number
    code = currency.upper()
    symbol = _SYMBOL.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{code} {number}"
