"""ShouldRateLimit's per-limit statistics after scripted calls (real Redis, manual clock)."""

from __future__ import annotations

from gatekeeper.clock import ManualClock
from gatekeeper.ratelimit import (
    OVERFLOW,
    LimitOverride,
    RateLimitConfig,
    RateLimitService,
    RedisCounterStore,
    StatsTable,
    Unit,
)

Counts = tuple[int, int, int, int, int]  # total, within, near, over, shadow


def series(service: RateLimitService) -> dict[str, Counts]:
    """Every series with a hit, by descriptor label (domain messaging)."""
    found: dict[str, Counts] = {}
    for s in service.stats.series():
        counts = (s.total_hits, s.within_limit, s.near_limit, s.over_limit, s.shadow_mode)
        if any(counts):
            assert s.domain == "messaging"
            found[s.descriptor] = counts
    return found


async def hit(service: RateLimitService, *entries: tuple[str, str], hits: int = 0) -> None:
    await service.should_rate_limit("messaging", [list(entries)], hits)


async def test_the_config_descriptors_series_exist_from_the_start(
    service: RateLimitService,
) -> None:
    names = {s.descriptor for s in service.stats.series()}
    assert {"from_number", "from_number.to_number", "from_number_+15550100"} <= names
    assert {"path_/v1/images/*", "remote_address.path_/login", "tenant_beta"} <= names
    # named from request values, so never from the config: detailed_metric, value_to_metric
    assert not names & {"client", "region"}
    assert "path_/health" not in names  # unlimited: never counted
    assert series(service) == {}


async def test_over_and_near_limit_in_hits(service: RateLimitService) -> None:
    for _ in range(5):  # limit 4 a minute, near-limit threshold floor(4 x 0.8) = 3
        await hit(service, ("from_number", "+1"))
    await hit(service, ("from_number", "+2"))  # another value, the same (config) series
    assert series(service) == {"from_number": (6, 5, 1, 1, 0)}


async def test_hits_addend_counts_in_hits(service: RateLimitService) -> None:
    # limit 1000, near 800: 600 within; 400 within of which 200 near; 1 over
    for hits in (600, 400, 1):
        await hit(service, ("model", "gpt"), hits=hits)
    assert series(service) == {"model": (1001, 1000, 200, 1, 0)}
    await service.should_rate_limit("messaging", [[("model", "gpt")]], 5, [0])  # only looks
    assert series(service) == {"model": (1001, 1000, 200, 1, 0)}


async def test_shadow_mode(service: RateLimitService) -> None:
    for _ in range(3):  # limit 1 (near threshold 0), shadow_mode
        await hit(service, ("tenant", "beta"))
    assert series(service) == {"tenant_beta": (3, 1, 1, 2, 2)}


async def test_detailed_metric_and_value_to_metric_name_series_by_value(
    service: RateLimitService,
) -> None:
    await hit(service, ("client", "acme"))
    await hit(service, ("client", "acme"))
    await hit(service, ("client", "bob"))
    await hit(service, ("region", "eu"))
    assert series(service) == {
        "client_acme": (2, 2, 0, 0, 0),
        "client_bob": (1, 1, 0, 0, 0),
        "region_eu": (1, 1, 0, 0, 0),
    }


async def test_unlimited_replaced_and_envoy_sent_limits(service: RateLimitService) -> None:
    await hit(service, ("path", "/health"))  # unlimited: no statistics
    await service.should_rate_limit(
        "messaging", [[("plan", "free")], [("account", "partner")]]
    )  # free_plan is replaced: only the partner limit counts
    await service.should_rate_limit(
        "messaging",
        [[("anything", "x")]],
        2,
        overrides=[LimitOverride(1, Unit.MINUTE)],
    )  # a limit Envoy sends: named from the request's entries
    assert series(service) == {
        "account_partner": (1, 1, 0, 0, 0),
        "anything_x": (2, 0, 1, 1, 0),  # hit 1 near (threshold 0), hit 2 over
    }


async def test_series_named_from_requests_are_capped(
    messaging: RateLimitConfig, store: RedisCounterStore, clock: ManualClock
) -> None:
    table = StatsTable(max_series=1)
    service = RateLimitService(messaging, store, clock, stats=table)
    config_series = len(table)
    assert config_series > 1  # the config's own series ignore the cap
    for client in ("a", "b", "c"):
        await hit(service, ("client", client))
    await hit(service, ("from_number", "+1"))  # a config series still counts on its own
    assert series(service) == {OVERFLOW: (3, 3, 0, 0, 0), "from_number": (1, 1, 0, 0, 0)}
    assert table.overflowed == 3
    assert len(table) == config_series


async def test_series_keep_counting_across_a_reload(
    service: RateLimitService, messaging: RateLimitConfig
) -> None:
    await hit(service, ("from_number", "+1"))
    service.replace_config(messaging)
    await hit(service, ("from_number", "+1"))
    assert series(service)["from_number"] == (2, 2, 0, 0, 0)
