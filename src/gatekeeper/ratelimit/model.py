"""The envoyproxy/ratelimit configuration as frozen values (what `config.py` loads).

Mirrors the upstream YAML: a file holds one `domain` and a tree of `descriptors`; each
descriptor has a `key`, an optional `value` (absent = any value of that key; `*` in the value is
a wildcard), an optional `rate_limit`, and nested `descriptors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DescriptorConfig", "DomainConfig", "RateLimit", "RateLimitConfig", "Unit"]


class Unit(StrEnum):
    """A fixed window's length. Windows are aligned to the Unix epoch, as upstream does.

    `month` is 30 days and `year` 365 days (upstream `utils.UnitToDivider`), not calendar ones.
    """

    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"

    @property
    def seconds(self) -> int:
        """The window length in seconds."""
        match self:
            case Unit.SECOND:
                return 1
            case Unit.MINUTE:
                return 60
            case Unit.HOUR:
                return 3600
            case Unit.DAY:
                return 86_400
            case Unit.WEEK:
                return 7 * 86_400
            case Unit.MONTH:
                return 30 * 86_400
            case _:
                return 365 * 86_400


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate_limit:` of a descriptor, plus the descriptor flags that travel with it upstream.

    `unit` is None only when `unlimited`. `requests_per_unit` is 0..2^32-1 (a uint32 upstream).
    """

    requests_per_unit: int
    unit: Unit | None
    unlimited: bool = False
    name: str = ""
    replaces: tuple[str, ...] = ()
    shadow_mode: bool = False
    quota_mode: bool = False
    detailed_metric: bool = False


@dataclass(frozen=True, slots=True)
class DescriptorConfig:
    """One node of a domain's descriptor tree.

    `value == ""` means the key alone: it matches any value of the key (the default).
    `source` is `file:line` for messages.
    """

    key: str
    value: str = ""
    rate_limit: RateLimit | None = None
    descriptors: tuple[DescriptorConfig, ...] = ()
    value_to_metric: bool = False
    share_threshold: bool = False
    source: str = ""

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.value


@dataclass(frozen=True, slots=True)
class DomainConfig:
    domain: str
    descriptors: tuple[DescriptorConfig, ...]
    sources: tuple[str, ...] = ()  # the files that defined it (several when merged)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Every domain loaded, in load order. An empty config answers OK to everything."""

    domains: tuple[DomainConfig, ...] = ()

    def domain(self, name: str) -> DomainConfig | None:
        return next((d for d in self.domains if d.domain == name), None)
