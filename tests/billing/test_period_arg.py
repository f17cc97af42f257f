"""The --period argument of export and reconcile."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gatekeeper.billing import parse_period


def d(y: int, m: int, day: int) -> datetime:
    return datetime(y, m, day, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "billing_day", "start", "end"),
    [
        ("2026-11-15", 15, d(2026, 11, 15), d(2026, 12, 15)),  # a period's own start
        ("2026-11-30", 15, d(2026, 11, 15), d(2026, 12, 15)),  # any day inside it
        ("2026-11-03", 15, d(2026, 10, 15), d(2026, 11, 15)),
        ("2026-11", 15, d(2026, 11, 15), d(2026, 12, 15)),  # the period starting in November
        ("2026-11", None, d(2026, 11, 1), d(2026, 12, 1)),  # calendar month
        ("2027-02", 31, d(2027, 2, 28), d(2027, 3, 31)),  # billing day clamped in February
        ("2026-12", 31, d(2026, 12, 31), d(2027, 1, 31)),
    ],
)
def test_period_names_one_billing_window(
    text: str, billing_day: int | None, start: datetime, end: datetime
) -> None:
    w = parse_period(text).window(billing_day)
    assert (w.start, w.end) == (start, end)


@pytest.mark.parametrize("text", ["2026-13", "2026-02-30", "11/2026", "2026", ""])
def test_bad_period_is_rejected_with_the_expected_forms(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_period(text)
