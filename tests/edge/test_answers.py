"""Answers to Envoy built from engine decisions (DESIGN.md §4), without a transport."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gatekeeper.edge.answers import answer_for
from gatekeeper.engine import Decision, LimitKind, LimitStatus, Outcome

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY_END = datetime(2026, 11, 26, tzinfo=UTC)
MONTH_END = datetime(2026, 12, 1, tzinfo=UTC)


def _quota(limit: int, used: int) -> LimitStatus:
    return LimitStatus(LimitKind.QUOTA, "requests", limit, used, limit - used, DAY_END, 86400)


def _spend(limit: int, used: int) -> LimitStatus:
    return LimitStatus(LimitKind.SPEND, None, limit, used, limit - used, MONTH_END, 2592000)


def _allowed(*limits: LimitStatus) -> Decision:
    return Decision("d1", Outcome.ALLOWED, "acme", plan="pro", limits=limits)


def test_an_admission_tells_the_client_its_tightest_quota() -> None:
    answer = answer_for(_allowed(_quota(100, 90), _quota(1000, 10)), now=NOW)
    headers = dict(answer.client_headers)
    assert headers["x-ratelimit-limit"] == "100"
    assert headers["x-ratelimit-remaining"] == "10"
    assert headers["x-ratelimit-reset"] == str(12 * 3600)
    assert headers["ratelimit-policy"] == '"quota-requests";q=100;w=86400'


def test_a_spend_cap_nearer_its_end_than_any_quota_does_not_hide_the_quota_headers() -> None:
    """Spend is money, reported in denial bodies: the headers still carry the quota."""
    nano = 1_000_000_000
    answer = answer_for(_allowed(_quota(1_000_000, 1), _spend(10 * nano, 9 * nano)), now=NOW)
    headers = dict(answer.client_headers)
    assert headers["x-ratelimit-limit"] == "1000000"
    assert headers["x-ratelimit-remaining"] == "999999"


def test_an_admission_under_a_spend_cap_only_has_no_ratelimit_headers() -> None:
    answer = answer_for(_allowed(_spend(10, 9)), now=NOW)
    assert answer.allowed
    assert not [h for h, _ in answer.client_headers if "ratelimit" in h]


def test_a_spend_cap_denial_shows_money_in_the_one_format() -> None:
    """The detail a person reads: the currency's minor units ($0.50, not 0.4971); the fields
    stay exact decimal strings."""
    denied = _spend(500_000_000, 497_134_000)
    decision = Decision("d2", Outcome.SPEND_CAP, "acme", plan="pro", limits=(denied,),
                        denied_by=denied)  # fmt: skip
    body = json.loads(answer_for(decision, now=NOW).body)
    assert body["status"] == 402
    assert "spending cap of $0.50 reached" in body["detail"]
    assert "(spent $0.50)" in body["detail"]
    assert (body["cap"], body["spent"], body["currency"]) == ("0.50", "0.497134", "USD")
    yen = json.loads(answer_for(decision, now=NOW, currency="JPY").body)
    assert "spending cap of ¥0.5 reached" in yen["detail"]  # rounds to nothing: as is
