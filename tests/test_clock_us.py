"""clock.to_us: the exact microsecond count every script argument and event time is built from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.clock import to_us

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _by_parts(when: datetime) -> int:
    """The count from timedelta's normalised parts (days, seconds, microseconds)."""
    delta = when.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2400, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
        ),
    )
)
def test_to_us_is_exact_in_any_offset(when: datetime) -> None:
    assert to_us(when) == _by_parts(when)
    assert to_us(when) == to_us(when.astimezone(UTC))  # the instant, not the wall time


def test_to_us_known_instants() -> None:
    assert to_us(_EPOCH) == 0
    assert to_us(datetime(2026, 12, 5, 21, 0, 0, 123456, tzinfo=UTC)) == 1_796_504_400_123_456
    assert to_us(_EPOCH - timedelta(microseconds=1)) == -1  # before the epoch: still exact


def test_a_naive_datetime_is_local_time_as_astimezone_reads_it() -> None:
    naive = datetime(2026, 6, 1, 12, 0, 0)
    assert to_us(naive) == _by_parts(naive.astimezone(UTC))
