"""One money format for people (`gatekeeper.money.format_money`), and the dashboard's copy of it
(`http/ui/money.js`) answering the same for the same amounts."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from decimal import Decimal
from importlib.resources import files

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.apiclient import format_usage
from gatekeeper.money import NANO, format_money, format_nano, minor_units, round_to_minor

CURRENCIES = ("USD", "EUR", "GBP", "JPY", "KWD", "CHF", "BHD", "KRW")
nanos = st.integers(min_value=-(10**18), max_value=10**18)


@pytest.mark.parametrize(
    ("nano", "currency", "exact", "text"),
    [
        (1_100_000_000, "USD", False, "$1.10"),
        (682_000_000, "USD", False, "$0.68"),  # was "$0.682"
        (497_134_000, "USD", False, "$0.50"),  # was "$0.4971"
        (500_000_000, "USD", False, "$0.50"),
        (0, "USD", False, "$0.00"),
        (4_000_000, "USD", False, "$0.004"),  # spent something: never "$0.00"
        (5_000_000, "USD", False, "$0.005"),  # half a cent rounds (half-even) to 0: shown whole
        (15_000_000, "USD", False, "$0.02"),  # half-even, as invoice lines round
        (497_100, "USD", True, "$0.0004971"),  # a unit price: every digit
        (2_000_000_000, "USD", True, "$2.00"),
        (120_000_000_000, "JPY", False, "\u00a5120"),
        (120_400_000_000, "JPY", False, "\u00a5120"),
        (682_000_000, "KWD", False, "KWD 0.682"),
        (-1_234_500_000_000, "EUR", False, "-\u20ac1,234.50"),
        (1_234_567_000_000, "CHF", False, "CHF 1,234.57"),
    ],
)
def test_examples(nano: int, currency: str, exact: bool, text: str) -> None:
    assert format_money(nano, currency, exact=exact) == text


def _plain_parts(text: str) -> tuple[Decimal, int]:
    value = Decimal(text)
    return value, len(text.partition(".")[2])


@settings(max_examples=400, deadline=None)
@given(nano=nanos, currency=st.sampled_from(CURRENCIES))
def test_an_amount_has_the_minor_units_unless_it_would_round_to_nothing(
    nano: int, currency: str
) -> None:
    m = minor_units(currency)
    plain = format_money(nano, currency, plain=True)
    value, decimals = _plain_parts(plain)
    minor = round_to_minor(nano, currency)
    if nano == 0 or minor != 0:
        assert decimals == m
        assert value == Decimal(minor).scaleb(-m)  # exactly what an invoice line would bill
    else:  # not zero, rounds to zero: shown exactly, with no more digits than it needs
        assert value * NANO == nano
        assert decimals > m and not plain.endswith("0")
    # the person's form is the plain one with a symbol or code and thousands separators
    shown = format_money(nano, currency)
    assert shown.replace(",", "").lstrip("-").lstrip("$\u20ac\u00a3\u00a5").removeprefix(
        f"{currency} "
    ) == plain.lstrip("-")
    assert shown.startswith("-") == plain.startswith("-") == (value < 0)


@settings(max_examples=400, deadline=None)
@given(nano=nanos, currency=st.sampled_from(CURRENCIES))
def test_an_exact_amount_keeps_every_digit_and_at_least_the_minor_units(
    nano: int, currency: str
) -> None:
    plain = format_money(nano, currency, exact=True, plain=True)
    value, decimals = _plain_parts(plain)
    assert value * NANO == nano
    m = minor_units(currency)
    assert decimals >= m
    assert decimals == m or not plain.endswith("0")


def _cases() -> list[tuple[int, str, bool]]:
    rng = random.Random(24)
    cases = [(n, c, e) for n in (0, 1, -1, 5_000_000, 15_000_000, 497_100) for c in CURRENCIES
             for e in (False, True)]  # fmt: skip
    for _ in range(600):
        scale = 10 ** rng.randint(0, 18)
        cases.append((rng.randint(-scale, scale), rng.choice(CURRENCIES), rng.random() < 0.3))
    return cases


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the dashboard's JS")
def test_the_dashboard_formats_money_as_python_does() -> None:
    """money.js on the API's decimal strings (format_nano) answers what format_money does."""
    script = files("gatekeeper.http.ui").joinpath("money.js").read_text(encoding="utf-8")
    cases = _cases()
    runner = (
        script
        + "\nconst cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        + "\nprocess.stdout.write(JSON.stringify(cases.map(([a, c, exact]) => ["
        + "globalThis.gatekeeperMoney.formatMoney(a, c, { exact }),"
        + "globalThis.gatekeeperMoney.formatMoney(a, c, { exact, plain: true })])));"
    )
    given_ = json.dumps([[format_nano(n), c, e] for n, c, e in cases])
    done = subprocess.run(
        ["node", "-e", runner], input=given_, capture_output=True, text=True, timeout=30,
        check=True,
    )  # fmt: skip
    got = json.loads(done.stdout)
    want = [
        [format_money(n, c, exact=e), format_money(n, c, exact=e, plain=True)] for n, c, e in cases
    ]
    assert [tuple(x) for x in got] == [tuple(x) for x in want]


def test_the_usage_command_shows_money_in_the_one_format() -> None:
    spend = {"spent": "0.682", "cap": "0.50", "remaining": "0", "currency": "USD",
             "reset": "2026-12-01T00:00:00Z"}  # fmt: skip
    table = format_usage(
        {"customer": "acme", "plan": "pro", "at": "2026-11-20T10:00:00Z", "features": [],
         "spend": spend}
    )  # fmt: skip
    assert "$0.68 / $0.50" in table and "remaining $0.00" in table
    assert "/ no cap" in format_usage(
        {"customer": "acme", "plan": "pro", "at": "-", "features": [],
         "spend": {**spend, "cap": None, "remaining": None}}
    )  # fmt: skip
