"""Descriptor matching: exact beats wildcard beats key-only, nesting, depth, stats names."""

from __future__ import annotations

import pytest

from gatekeeper.ratelimit import (
    Matcher,
    RateLimit,
    RateLimitConfig,
    Unit,
    parse_ratelimit_documents,
)
from gatekeeper.ratelimit.matcher import wildcard_match


@pytest.fixture(scope="module")
def matcher(messaging: RateLimitConfig) -> Matcher:
    return Matcher(messaging)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("foo*", "foo", True),
        ("foo*", "foobar", True),
        ("foo*", "fo", False),
        ("*bar", "foobar", True),
        ("/v1/*/export", "/v1/reports/export", True),
        ("/v1/*/export", "/v1/export", False),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "acb", False),
        ("ab*ba", "aba", False),  # prefix and suffix may not overlap
        ("*", "", True),
        ("plain", "plain", True),
        ("plain", "plainer", False),
    ],
)
def test_wildcard_match(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_match(pattern, value) is expected


def _limit(matcher: Matcher, *entries: tuple[str, str]) -> RateLimit | None:
    match = matcher.match("messaging", entries)
    return None if match is None else match.limit


def test_specific_value_beats_key_only_default(matcher: Matcher) -> None:
    assert _limit(matcher, ("from_number", "+15550100")) == RateLimit(10, Unit.MINUTE)
    assert _limit(matcher, ("from_number", "+15550199")) == RateLimit(4, Unit.MINUTE)


def test_exact_then_wildcards_in_file_order_then_default(matcher: Matcher) -> None:
    assert _limit(matcher, ("path", "/v1/images/export")) == RateLimit(3, Unit.SECOND)
    assert _limit(matcher, ("path", "/v1/reports/export")) == RateLimit(1, Unit.DAY)
    assert _limit(matcher, ("path", "/health")).unlimited  # type: ignore[union-attr]
    assert _limit(matcher, ("path", "/anything")) == RateLimit(100, Unit.SECOND)


def test_nested_descriptors(matcher: Matcher) -> None:
    pair = _limit(matcher, ("from_number", "+1"), ("to_number", "+2"))
    assert pair == RateLimit(2, Unit.HOUR)


def test_no_backtracking_once_a_level_matched(matcher: Matcher) -> None:
    # The exact `+15550100` node has no children, so the key-only node's nested limit is
    # not consulted (upstream walks one path).
    assert _limit(matcher, ("from_number", "+15550100"), ("to_number", "+2")) is None


def test_limit_applies_only_at_the_request_depth(matcher: Matcher) -> None:
    assert _limit(matcher, ("remote_address", "10.0.0.1")) is None  # limit is deeper
    deep = _limit(matcher, ("remote_address", "10.0.0.1"), ("path", "/login"))
    assert deep == RateLimit(2, Unit.MINUTE)
    longer = (("from_number", "+1"), ("to_number", "+2"), ("extra", "x"))
    assert _limit(matcher, *longer) is None  # more entries than the tree is deep
    assert _limit(matcher, ("remote_address", "10.0.0.1"), ("path", "/other")) is None


def test_unknown_domain_key_or_empty_entries(matcher: Matcher) -> None:
    assert matcher.match("nope", [("path", "/")]) is None
    assert _limit(matcher, ("unknown", "x")) is None
    assert matcher.match("messaging", []) is None
    assert matcher.has_domain("messaging") and not matcher.has_domain("nope")


def test_counter_entries_are_the_requests_unless_share_threshold(matcher: Matcher) -> None:
    match = matcher.match("messaging", [("path", "/v1/images/cat.png")])
    assert match is not None and match.counter_entries == (("path", "/v1/images/cat.png"),)
    shared = matcher.match("messaging", [("bucket", "files-2026")])
    assert shared is not None and shared.counter_entries == (("bucket", "files*"),)


@pytest.mark.parametrize(
    ("entries", "stats_key"),
    [
        ((("from_number", "+1"),), "messaging.from_number"),
        ((("from_number", "+15550100"),), "messaging.from_number_+15550100"),
        ((("from_number", "+1"), ("to_number", "+2")), "messaging.from_number.to_number"),
        ((("path", "/v1/images/x"),), "messaging.path_/v1/images/*"),
        ((("client", "acme"),), "messaging.client_acme"),  # detailed_metric
        ((("region", "eu"),), "messaging.region_eu"),  # value_to_metric
        ((("bucket", "files-1"),), "messaging.bucket_files*"),
    ],
)
def test_stats_key_follows_upstream_naming(
    matcher: Matcher, entries: tuple[tuple[str, str], ...], stats_key: str
) -> None:
    match = matcher.match("messaging", entries)
    assert match is not None and match.stats_key == stats_key


def test_a_literal_wildcard_value_matches_exactly_first() -> None:
    text = """
domain: d
descriptors:
  - key: k
    value: "a*"
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: k
    value: "ab*"
    rate_limit: {unit: second, requests_per_unit: 2}
"""
    matcher = Matcher(parse_ratelimit_documents([("d.yaml", text)]))
    # File order decides between wildcards, as upstream: `a*` comes first.
    assert matcher.match("d", [("k", "abc")]).limit.requests_per_unit == 1  # type: ignore[union-attr]
    assert matcher.match("d", [("k", "ab*")]).limit.requests_per_unit == 2  # type: ignore[union-attr]


def test_config_stats_keys_are_built_once_at_load(matcher: Matcher) -> None:
    keys = matcher.stats_keys()
    assert ("messaging", "messaging.from_number") in keys
    assert ("messaging", "messaging.from_number.to_number") in keys
    assert ("messaging", "messaging.path_/v1/images/*") in keys
    assert ("messaging", "messaging.remote_address.path_/login") in keys
    names = {key for _, key in keys}
    # unlimited, detailed_metric and key-only value_to_metric limits are never named by config
    assert not names & {"messaging.path_/health", "messaging.client", "messaging.region"}
    first = matcher.match("messaging", [("from_number", "+1")])
    second = matcher.match("messaging", [("from_number", "+2")])
    assert first is not None and second is not None and first.static_key
    assert first.stats_key is second.stats_key  # the same string object: nothing built
    assert (first.near_limit, second.limit.requests_per_unit) == (3, 4)  # floor(4 x 0.8)
    detailed = matcher.match("messaging", [("client", "acme")])
    assert detailed is not None and not detailed.static_key


def test_value_to_metric_below_a_static_level_keeps_the_config_prefix() -> None:
    text = """
domain: d
descriptors:
  - key: tenant
    value: acme.corp
    descriptors:
      - key: user
        value_to_metric: true
        rate_limit: {unit: second, requests_per_unit: 10}
"""
    matcher = Matcher(parse_ratelimit_documents([("d.yaml", text)]), near_limit_ratio=0.5)
    match = matcher.match("d", [("tenant", "acme.corp"), ("user", "u.1")])
    assert match is not None and not match.static_key
    assert match.stats_key == "d.tenant_acme.corp.user_u.1"
    assert match.near_limit == 5
    assert matcher.stats_keys() == []  # every name under it carries a request value
