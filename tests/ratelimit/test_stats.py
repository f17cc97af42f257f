"""Per-limit statistics: upstream's near-limit arithmetic and the bounded series table."""

from __future__ import annotations

import pytest

from gatekeeper.ratelimit import OVERFLOW, LimitStats, StatsTable, near_limit_threshold


def _counts(stats: LimitStats) -> tuple[int, int, int, int, int]:
    return (
        stats.total_hits,
        stats.within_limit,
        stats.near_limit,
        stats.over_limit,
        stats.shadow_mode,
    )


@pytest.mark.parametrize(
    ("limit", "ratio", "threshold"),
    [
        (5, 0.8, 4),
        (10, 0.8, 8),
        (3, 0.8, 2),
        (15, 0.8, 12),
        (0, 0.8, 0),
        # float32 arithmetic as upstream (`float32(limit) * NEAR_LIMIT_RATIO`): the exact
        # product is 4195376.8, its float32 rounding 4195377.
        (5_244_221, 0.8, 4_195_377),
        (100, 0.5, 50),
    ],
)
def test_near_limit_threshold_is_upstreams_float32_floor(
    limit: int, ratio: float, threshold: int
) -> None:
    assert near_limit_threshold(limit, ratio) == threshold


@pytest.mark.parametrize(
    ("before", "hits", "counts"),
    [
        # limit 20, near threshold 16: (total, within, near, over, shadow)
        (10, 1, (1, 1, 0, 0, 0)),  # well within
        (16, 1, (1, 1, 1, 0, 0)),  # the 17th hit is near the limit
        (14, 3, (3, 3, 1, 0, 0)),  # 15, 16 within; 17 near
        (19, 1, (1, 1, 1, 0, 0)),  # the 20th hit: still within, near
        (20, 1, (1, 0, 0, 1, 0)),  # the 21st: over (and no longer "near")
        (18, 4, (4, 0, 2, 2, 0)),  # 19, 20 near; 21, 22 over; none counted within
        (10, 12, (12, 0, 4, 2, 0)),  # 17..20 near, 21, 22 over
        (25, 5, (5, 0, 0, 5, 0)),  # already over: every hit over
        (25, 0, (0, 0, 0, 0, 0)),  # hits_addend 0 only looks
    ],
)
def test_record_splits_hits_like_upstream(before: int, hits: int, counts: tuple[int, ...]) -> None:
    stats = LimitStats("d", "k")
    stats.record(hits=hits, after=before + hits, limit=20, near=16, shadow=False)
    assert _counts(stats) == counts


def test_shadow_mode_counts_the_over_limit_hits_too() -> None:
    stats = LimitStats("d", "k")
    stats.record(hits=4, after=22, limit=20, near=16, shadow=True)
    stats.record(hits=3, after=25, limit=20, near=16, shadow=True)
    assert _counts(stats) == (7, 0, 2, 5, 5)


def test_config_series_always_exist_request_series_are_capped() -> None:
    table = StatsTable(max_series=3)
    table.register([("d", "d.a"), ("d", "d.b"), ("d", "d.c"), ("d", "d.d")])  # never capped
    assert len(table) == 4
    assert table.get("d", "d.a") is table.get("d", "d.a")
    overflow = table.get("d", "d.client_x")  # a new name past the cap
    assert (overflow.domain, overflow.descriptor) == ("d", OVERFLOW)
    assert table.get("d", "d.client_y") is overflow
    assert table.get("e", "e.x").descriptor == OVERFLOW  # one overflow series per domain
    assert table.overflowed == 3
    assert len(table) == 4
    assert [(s.domain, s.descriptor) for s in table.series()][-2:] == [
        ("d", OVERFLOW),
        ("e", OVERFLOW),
    ]


def test_request_series_fill_up_to_the_cap_and_long_names_overflow() -> None:
    table = StatsTable(max_series=2, max_key_chars=20)
    first = table.get("d", "d.client_a")
    assert (first.domain, first.descriptor) == ("d", "client_a")
    assert table.get("d", "d.client_" + "x" * 20).descriptor == OVERFLOW  # too long a name
    assert table.get("d", "d.client_b").descriptor == "client_b"
    assert table.get("d", "d.client_c").descriptor == OVERFLOW  # full
    assert table.get("d", "d.client_a") is first  # known names keep counting
    assert table.overflowed == 2
    with pytest.raises(ValueError, match="max_series"):
        StatsTable(max_series=0)
