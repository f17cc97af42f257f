"""ShouldRateLimit semantics on real Redis, time from a manual clock (no sleeping)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from gatekeeper.clock import ManualClock
from gatekeeper.ratelimit import (
    UNLIMITED_REMAINING,
    Code,
    CurrentLimit,
    DescriptorStatus,
    LimitOverride,
    RateLimitConfig,
    RateLimitRequestError,
    RateLimitResult,
    RateLimitService,
    RedisCounterStore,
    Unit,
    parse_ratelimit_documents,
)

Entries = Sequence[tuple[str, str]]


async def ask(
    service: RateLimitService,
    *descriptors: Entries,
    hits: int = 0,
    per: Sequence[int | None] | None = None,
) -> RateLimitResult:
    return await service.should_rate_limit("messaging", list(descriptors), hits, per)


async def one(
    service: RateLimitService, *entries: tuple[str, str], hits: int = 0
) -> DescriptorStatus:
    result = await ask(service, entries, hits=hits)
    (status,) = result.statuses
    return status


async def keys(redis: Redis, prefix: str) -> list[str]:
    return sorted([k.decode() async for k in redis.scan_iter(match=f"{prefix}:*")])


async def test_unknown_domain_or_no_match_is_ok_without_a_limit(
    service: RateLimitService, redis: Redis, key_prefix: str
) -> None:
    result = await service.should_rate_limit("elsewhere", [[("path", "/")]])
    assert result == RateLimitResult(Code.OK, (DescriptorStatus(Code.OK),))
    assert await one(service, ("nothing", "here")) == DescriptorStatus(Code.OK)
    assert await keys(redis, key_prefix) == []


async def test_key_only_default_counts_each_value_and_reports_remaining(
    service: RateLimitService,
) -> None:
    limit = CurrentLimit(4, Unit.MINUTE)
    seen = [await one(service, ("from_number", "+1")) for _ in range(5)]
    assert [(s.code, s.limit_remaining) for s in seen] == [
        (Code.OK, 3),
        (Code.OK, 2),
        (Code.OK, 1),
        (Code.OK, 0),
        (Code.OVER_LIMIT, 0),
    ]
    assert all(s.current_limit == limit and s.duration_until_reset == 60 for s in seen)
    other = await one(service, ("from_number", "+2"))  # its own counter
    assert (other.code, other.limit_remaining) == (Code.OK, 3)


async def test_specific_value_beats_default(service: RateLimitService) -> None:
    status = await one(service, ("from_number", "+15550100"))
    assert status.current_limit == CurrentLimit(10, Unit.MINUTE)
    assert status.limit_remaining == 9


async def test_nested_descriptor_has_its_own_counter(service: RateLimitService) -> None:
    pair = (("from_number", "+1"), ("to_number", "+2"))
    codes = [(await one(service, *pair)).code for _ in range(3)]
    assert codes == [Code.OK, Code.OK, Code.OVER_LIMIT]
    assert (await one(service, *pair)).duration_until_reset == 3600
    assert (await one(service, ("from_number", "+1"))).limit_remaining == 3  # untouched


async def test_wildcards_and_unlimited(
    service: RateLimitService, redis: Redis, key_prefix: str
) -> None:
    for _ in range(3):
        assert (await one(service, ("path", "/v1/images/a"))).code is Code.OK
    assert (await one(service, ("path", "/v1/images/a"))).code is Code.OVER_LIMIT
    assert (await one(service, ("path", "/v1/images/b"))).limit_remaining == 2  # per value
    export = await one(service, ("path", "/v1/reports/export"))
    assert export.current_limit == CurrentLimit(1, Unit.DAY)
    assert export.duration_until_reset == 86_400
    before = await keys(redis, key_prefix)
    health = await one(service, ("path", "/health"))
    assert health == DescriptorStatus(Code.OK, limit_remaining=UNLIMITED_REMAINING)
    assert await keys(redis, key_prefix) == before  # unlimited never counts


async def test_limit_at_depth_two_only(service: RateLimitService) -> None:
    assert (await one(service, ("remote_address", "10.0.0.1"))).current_limit is None
    status = await one(service, ("remote_address", "10.0.0.1"), ("path", "/login"))
    assert status.current_limit == CurrentLimit(2, Unit.MINUTE)


async def test_replaces_drops_the_named_limit_for_this_request(service: RateLimitService) -> None:
    alone = await ask(service, [("plan", "free")])
    assert alone.statuses[0].current_limit == CurrentLimit(5, Unit.HOUR, "free_plan")
    assert alone.statuses[0].limit_remaining == 4
    partner = await ask(service, [("plan", "free")], [("account", "partner")])
    assert partner.statuses[0] == DescriptorStatus(Code.OK)  # replaced: no limit
    assert partner.statuses[1].current_limit == CurrentLimit(1000, Unit.HOUR)
    vip = await ask(service, [("plan", "free")], [("account", "vip")])
    assert vip.statuses == (
        DescriptorStatus(Code.OK),
        DescriptorStatus(Code.OK, limit_remaining=UNLIMITED_REMAINING),
    )
    again = await ask(service, [("plan", "free")])
    assert again.statuses[0].limit_remaining == 3  # replaced requests did not count


async def test_shadow_mode_answers_ok_but_flags_the_overage(service: RateLimitService) -> None:
    first = await ask(service, [("tenant", "beta")])
    second = await ask(service, [("tenant", "beta")])
    assert first.statuses[0].shadowed is False
    assert second.overall_code is Code.OK
    (status,) = second.statuses
    assert (status.code, status.limit_remaining, status.shadowed) == (Code.OK, 0, True)
    assert status.current_limit == CurrentLimit(1, Unit.MINUTE)


async def test_detailed_metric_changes_only_the_stats_key(service: RateLimitService) -> None:
    detailed = await one(service, ("client", "acme"))
    plain = await one(service, ("from_number", "+1"))
    assert detailed.stats_key == "messaging.client_acme"
    assert plain.stats_key == "messaging.from_number"
    assert (detailed.code, detailed.limit_remaining) == (Code.OK, 49)


async def test_request_hits_addend_counts_tokens(service: RateLimitService) -> None:
    assert (await one(service, ("model", "gpt"), hits=600)).limit_remaining == 400
    assert (await one(service, ("model", "gpt"), hits=400)).limit_remaining == 0
    over = await one(service, ("model", "gpt"), hits=1)
    assert (over.code, over.limit_remaining) == (Code.OVER_LIMIT, 0)


async def test_per_descriptor_hits_addend_wins_and_zero_only_looks(
    service: RateLimitService, redis: Redis, key_prefix: str
) -> None:
    result = await ask(service, [("model", "a")], [("model", "b")], hits=10, per=[None, 250])
    assert [s.limit_remaining for s in result.statuses] == [990, 750]
    look = await ask(service, [("model", "b")], [("model", "c")], hits=10, per=[0, 0])
    assert [s.limit_remaining for s in look.statuses] == [750, 1000]
    assert not any("model=c" in k for k in await keys(redis, key_prefix))


async def test_one_descriptor_over_makes_the_request_over_and_all_count(
    service: RateLimitService,
) -> None:
    await ask(service, [("path", "/x")], [("from_number", "+9")], per=[1, 4])
    result = await ask(service, [("path", "/x")], [("from_number", "+9")])
    assert result.overall_code is Code.OVER_LIMIT
    assert [(s.code, s.limit_remaining) for s in result.statuses] == [
        (Code.OK, 98),  # counted even though the request is over (upstream default)
        (Code.OVER_LIMIT, 0),
    ]


async def test_window_rolls_over_with_the_clock(
    service: RateLimitService, clock: ManualClock
) -> None:
    clock.advance(15)
    status = await one(service, ("from_number", "+1"), hits=4)
    assert (status.limit_remaining, status.duration_until_reset) == (0, 45)
    clock.advance(44)
    assert (await one(service, ("from_number", "+1"))).code is Code.OVER_LIMIT
    clock.advance(1)  # the next minute: a new window, a new key
    fresh = await one(service, ("from_number", "+1"))
    assert (fresh.code, fresh.limit_remaining, fresh.duration_until_reset) == (Code.OK, 3, 60)


async def test_share_threshold_counts_every_match_together(service: RateLimitService) -> None:
    codes = [(await one(service, ("bucket", f"files-{i}"))).code for i in range(3)]
    assert codes == [Code.OK, Code.OK, Code.OVER_LIMIT]


async def test_quota_mode_is_over_only_when_every_quota_is(service: RateLimitService) -> None:
    await ask(service, [("quota", "a")])
    mixed = await ask(service, [("quota", "a")], [("quota", "b")])
    assert [s.code for s in mixed.statuses] == [Code.OVER_LIMIT, Code.OK]
    assert mixed.overall_code is Code.OK
    both = await ask(service, [("quota", "a")], [("quota", "b")])
    assert both.overall_code is Code.OVER_LIMIT


async def test_limit_override_from_envoy_replaces_the_config(service: RateLimitService) -> None:
    override = LimitOverride(1, Unit.HOUR)
    call = service.should_rate_limit
    first = await call("messaging", [[("from_number", "+5")]], overrides=[override])
    second = await call("messaging", [[("from_number", "+5")]], overrides=[override])
    assert first.statuses[0].current_limit == CurrentLimit(1, Unit.HOUR)
    assert second.overall_code is Code.OVER_LIMIT
    unmatched = await call("messaging", [[("no", "rule")]], overrides=[override])
    assert unmatched.statuses[0].current_limit == CurrentLimit(1, Unit.HOUR)
    unknown = await call("nowhere", [[("k", "v")]], overrides=[override])
    assert unknown.statuses[0] == DescriptorStatus(Code.OK)  # upstream: unknown domain first


async def test_global_shadow_mode_keeps_statuses_but_answers_ok(
    messaging: RateLimitConfig, store: RedisCounterStore, clock: ManualClock
) -> None:
    service = RateLimitService(messaging, store, clock, global_shadow_mode=True)
    result = await ask(service, [("from_number", "+1")], hits=5)
    assert result.overall_code is Code.OK
    assert result.statuses[0].code is Code.OVER_LIMIT


async def test_duplicate_descriptors_count_twice(service: RateLimitService) -> None:
    result = await ask(service, [("from_number", "+7")], [("from_number", "+7")])
    assert [s.limit_remaining for s in result.statuses] == [3, 2]


@pytest.mark.parametrize(
    ("domain", "descriptors", "hits", "per", "message"),
    [
        ("", [[("a", "b")]], 0, None, "domain must not be empty"),
        ("messaging", [], 0, None, "descriptor list must not be empty"),
        ("messaging", [[("a", "b")]], -1, None, "hits_addend"),
        ("messaging", [[("a", "b")]], 2**53, None, "hits_addend"),
        ("messaging", [[("a", "b")]], 0, [1, 2], "one item per descriptor"),
        ("messaging", [[("a", "b")]], 0, [-3], "hits_addend"),
    ],
)
async def test_malformed_requests_are_rejected(
    service: RateLimitService,
    domain: str,
    descriptors: list[list[tuple[str, str]]],
    hits: int,
    per: list[int | None] | None,
    message: str,
) -> None:
    with pytest.raises(RateLimitRequestError, match=message):
        await service.should_rate_limit(domain, descriptors, hits, per)


async def test_replace_config_swaps_the_rules(
    service: RateLimitService, messaging: RateLimitConfig
) -> None:
    text = (
        "domain: messaging\ndescriptors:\n"
        "  - {key: from_number, rate_limit: {unit: hour, requests_per_unit: 1}}\n"
    )
    service.replace_config(parse_ratelimit_documents([("new.yaml", text)]))
    status = await one(service, ("from_number", "+1"))
    assert status.current_limit == CurrentLimit(1, Unit.HOUR)
    service.replace_config(messaging)
    assert service.config is messaging
