"""An envoyproxy/ratelimit-compatible rate limit service (Envoy's `ShouldRateLimit`).

Load the upstream YAML with `load_ratelimit_config(path)` (the path named by
`GATEKEEPER_RATELIMIT_CONFIG` or `settings.ratelimit_config`), count in Redis with
`RedisCounterStore`, answer with `RateLimitService` (per-limit statistics in its
`StatsTable`); `ConfigWatcher` reloads the config while serving. The gRPC face is
`gatekeeper.grpc.ratelimit_servicer`.
"""

from gatekeeper.ratelimit.config import (
    ENV_VAR,
    config_files,
    load_ratelimit_config,
    parse_ratelimit_documents,
    ratelimit_config_path,
)
from gatekeeper.ratelimit.matcher import Match, Matcher
from gatekeeper.ratelimit.model import (
    DescriptorConfig,
    DomainConfig,
    RateLimit,
    RateLimitConfig,
    Unit,
)
from gatekeeper.ratelimit.reload import ConfigWatcher
from gatekeeper.ratelimit.service import (
    UNLIMITED_REMAINING,
    Code,
    Counter,
    CounterStore,
    CurrentLimit,
    DescriptorStatus,
    LimitOverride,
    RateLimitRequestError,
    RateLimitResult,
    RateLimitService,
)
from gatekeeper.ratelimit.stats import (
    DEFAULT_MAX_SERIES,
    DEFAULT_NEAR_LIMIT_RATIO,
    OVERFLOW,
    LimitStats,
    StatsTable,
    near_limit_threshold,
)
from gatekeeper.ratelimit.store import RedisCounterStore, descriptor_key

__all__ = [
    "DEFAULT_MAX_SERIES",
    "DEFAULT_NEAR_LIMIT_RATIO",
    "ENV_VAR",
    "OVERFLOW",
    "UNLIMITED_REMAINING",
    "Code",
    "ConfigWatcher",
    "Counter",
    "CounterStore",
    "CurrentLimit",
    "DescriptorConfig",
    "DescriptorStatus",
    "DomainConfig",
    "LimitOverride",
    "LimitStats",
    "Match",
    "Matcher",
    "RateLimit",
    "RateLimitConfig",
    "RateLimitRequestError",
    "RateLimitResult",
    "RateLimitService",
    "RedisCounterStore",
    "StatsTable",
    "Unit",
    "config_files",
    "descriptor_key",
    "load_ratelimit_config",
    "near_limit_threshold",
    "parse_ratelimit_documents",
    "ratelimit_config_path",
]
