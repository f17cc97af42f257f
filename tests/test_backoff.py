"""The one backoff formula: doubling from base to cap, and each jitter within its bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.backoff import Backoff, Jitter


def test_doubling_to_the_cap() -> None:
    b = Backoff(0.05, 1.0)
    assert [b.delay(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.delay(0) == 0.05 and b.delay(10**9) == 1.0  # no overflow, never below the base


@given(
    base=st.floats(0, 10),
    extra=st.floats(0, 100),
    attempt=st.integers(1, 10**6),
    r=st.floats(0, 1, exclude_max=True),
)
def test_each_jitter_stays_under_the_ceiling(
    base: float, extra: float, attempt: int, r: float
) -> None:
    top = Backoff(base, base + extra).ceiling(attempt)
    assert base <= top <= base + extra or top == base + extra
    assert 0 <= Backoff(base, base + extra, Jitter.FULL).delay(attempt, lambda: r) <= top
    equal = Backoff(base, base + extra, Jitter.EQUAL).delay(attempt, lambda: r)
    assert top / 2 <= equal <= top


def test_a_cap_below_the_base_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
