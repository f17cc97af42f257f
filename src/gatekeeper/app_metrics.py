"""The metrics `gatekeeper serve` exposes on `/metrics` (README "Metrics" lists them).

Almost everything is read at scrape time from counters the parts already keep
(`Authorizer.counts`, `DecisionEngine.denied_locally`, ...): the decision path pays only for
the latency histogram (one `perf_counter` pair and a bisect). Values are per process.
"""

from __future__ import annotations

import functools
import gc
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from gatekeeper.directory import DirectoryStats
from gatekeeper.edge import Authorizer, OfflineBacklog
from gatekeeper.edge.identity import IdentityFailure
from gatekeeper.engine import DecisionEngine, Outcome, SettleStatus
from gatekeeper.grpc.als import AccessLogServicer
from gatekeeper.metrics import Counter, Histogram, Registry
from gatekeeper.net.guards import NetStats
from gatekeeper.ratelimit import (
    OVERFLOW,
    ConfigWatcher,
    LimitStats,
    RateLimitService,
    StatsTable,
)
from gatekeeper.ratelimit.service import Code
from gatekeeper.store.autopipeline import Pipelined
from gatekeeper.store.journal import DecisionJournal

__all__ = [
    "DECISION_BUCKETS",
    "RATELIMIT_STATS",
    "CollectorPauses",
    "ServeMetrics",
    "process_start_time",
]

# seconds: a decision takes ~0.1 ms (remembered denial) to a few ms (a Redis round trip)
DECISION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip
# seconds: a young-generation pass takes microseconds, a full one what the process holds
GC_BUCKETS = (0.0001, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)

# every outcome code the edge answers with, so each series exists from the start
OUTCOMES = (
    *(o.value for o in Outcome),
    *(f.value for f in IdentityFailure),
    "allowed_offline",
    "bad_request",
    "store_unavailable",
)


# ShouldRateLimit statistics (ratelimit/stats.py): metric, LimitStats field, help. Five
# counters, not one with a `result` label: they overlap (total = within + over; near and
# shadow are parts of those), so a sum over such a label would count hits twice.
RATELIMIT_STATS = (
    ("gatekeeper_ratelimit_hits_total", "total_hits",
     "ShouldRateLimit hits (hits_addend units) of limited descriptors, by domain and descriptor "
     "(upstream total_hits)."),
    ("gatekeeper_ratelimit_over_limit_total", "over_limit",
     "Hits past the limit (shadow mode included), by domain and descriptor (upstream "
     "over_limit)."),
    ("gatekeeper_ratelimit_near_limit_total", "near_limit",
     "Hits between the near-limit threshold (floor(limit x 0.8)) and the limit, by domain and "
     "descriptor (upstream near_limit)."),
    ("gatekeeper_ratelimit_within_limit_total", "within_limit",
     "Hits of answers within the limit, by domain and descriptor (upstream within_limit)."),
    ("gatekeeper_ratelimit_shadow_mode_total", "shadow_mode",
     "Hits past a shadow_mode limit, answered OK anyway, by domain and descriptor (upstream "
     "shadow_mode)."),
)  # fmt: skip


def process_start_time() -> float:
    """When this process started, in seconds since the epoch (Linux /proc; elsewhere: now)."""
    try:
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[19])  # field 22, starttime, in clock ticks after boot
        stat = Path("/proc/stat").read_text().splitlines()
        boot = next(float(line.split()[1]) for line in stat if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def _by(labels: tuple[str, ...], counts: Mapping[str, int]) -> dict[tuple[str, ...], float]:
    """`counts` as label values, with a 0 for each of `labels` not counted yet."""
    out: dict[tuple[str, ...], float] = {(name,): 0 for name in labels}
    out.update({(name,): value for name, value in counts.items()})
    return out


class CollectorPauses:
    """Times each pass of Python's cyclic garbage collector, which stops the event loop (and so
    every decision in flight) while it runs: per generation, and the longest pass since start.
    A callback in `gc.callbacks` between `install` and `remove`: two `perf_counter` calls per
    pass (a young pass is every ~700 allocations), nothing per decision."""

    def __init__(self, registry: Registry) -> None:
        histogram = registry.histogram(
            "gatekeeper_gc_pause_seconds",
            "Passes of the cyclic garbage collector (the event loop stands still meanwhile), "
            "by generation (2 = a full collection), in seconds.",
            GC_BUCKETS,
            ("generation",),
        )
        self._by_generation = tuple(histogram.labels(str(g)) for g in range(3))
        self.longest = 0.0
        registry.gauge_reading(
            "gatekeeper_gc_pause_max_seconds",
            "The longest pass of the cyclic garbage collector since the process started.",
            lambda: self.longest,
        )
        self._started = 0.0

    def __call__(self, phase: str, info: Mapping[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        self._by_generation[min(2, max(0, info.get("generation", 2)))].observe(took)
        if took > self.longest:
            self.longest = took

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class ServeMetrics:
    """The registry of one `gatekeeper serve` process and the instruments the App updates."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        started = process_start_time()
        self.registry.gauge_reading(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            lambda: started,
        )
        self.decision_seconds: Histogram = self.registry.histogram(
            "gatekeeper_decision_duration_seconds",
            "Time to answer one ext_authz decision (both transports), in seconds.",
            DECISION_BUCKETS,
        )
        self.task_failures: Counter = self.registry.counter(
            "gatekeeper_background_task_failures_total",
            "Supervised background tasks that ended unexpectedly (each makes the process "
            "not-ready).",
            ("task",),
        )
        self.collector = CollectorPauses(self.registry)

    def expose(
        self,
        *,
        ready: Callable[[], bool],
        authorizer: Authorizer,
        engine: DecisionEngine,
        als: AccessLogServicer,
        backlog: OfflineBacklog | None,
        autopipeline: Pipelined | None,
        ratelimit: RateLimitService | None,
        handler_failures: Callable[[], Mapping[tuple[str, str], int]],
        ratelimit_watcher: ConfigWatcher | None = None,
        directory: Callable[[], DirectoryStats] | None = None,
        net: Mapping[str, tuple[NetStats | None, Callable[[], int]]] | None = None,
        unreplicated: Callable[[], int] | None = None,
        journal: DecisionJournal | None = None,
    ) -> None:
        """Register readings of the parts' own counters (once, after the parts exist).
        `unreplicated`: Redis calls answered without settings.redis.wait_replicas replicas'
        acknowledgement (only read when that setting is on).
        `handler_failures`: (server, method) -> requests whose handler raised.
        `directory`: the customer directory cache's counts (`LiveDirectory.stats`).
        `net`: server name -> (its refusal counts, its open connections).
        `journal`: the decision store's journal (decisions whose reply was lost)."""
        r = self.registry
        r.gauge_reading(
            "gatekeeper_ready", "1 when the process is ready (as /readyz), else 0.", lambda: ready()
        )
        r.counter_reading(
            "gatekeeper_decisions_total",
            "ext_authz decisions by outcome code (allowed, quota_exhausted, spend_cap, ...).",
            lambda: _by(OUTCOMES, authorizer.counts),
            ("outcome",),
        )
        r.counter_reading(
            "gatekeeper_decisions_denied_locally_total",
            "Denials answered from a remembered denial, without a Redis call.",
            lambda: engine.denied_locally,
        )

        def store_errors() -> dict[tuple[str, ...], float]:
            errors: dict[tuple[str, ...], float] = {
                ("decide",): authorizer.store_errors,
                ("settle",): als.failed,
                ("offline_backlog",): backlog.failures if backlog is not None else 0,
            }
            if ratelimit is not None:
                errors[("ratelimit",)] = ratelimit.store_errors
            return errors

        r.counter_reading(
            "gatekeeper_store_unavailable_total",
            "Redis calls that failed (store unavailable), by operation.",
            store_errors,
            ("operation",),
        )
        r.counter_reading(
            "gatekeeper_handler_failures_total",
            "Requests whose handler raised an unexpected exception (a bug, logged with its "
            "traceback; answered 500 or UNKNOWN), by server (grpc, authz_http, api) and method.",
            lambda: {key: float(n) for key, n in handler_failures().items()},
            ("server", "method"),
        )
        r.counter_reading(
            "gatekeeper_settlements_total",
            "Access-log settlements of reservations, by result.",
            lambda: _by(tuple(s.value for s in SettleStatus), als.results),
            ("result",),
        )
        if backlog is not None:
            r.gauge_reading(
                "gatekeeper_offline_backlog",
                "Fail-open admissions waiting to be recorded once Redis is back.",
                lambda: len(backlog),
            )
            r.counter_reading(
                "gatekeeper_offline_backlog_recorded_total",
                "Fail-open admissions recorded in Redis after an outage.",
                lambda: backlog.recorded,
            )
        if autopipeline is not None:
            r.gauge_reading(
                "gatekeeper_redis_autopipeline_in_flight",
                "Redis calls of the decision path sent and not yet answered.",
                lambda: autopipeline.in_flight,
            )
        if unreplicated is not None:
            r.counter_reading(
                "gatekeeper_decisions_unreplicated_total",
                "Decision and settlement calls answered before settings.redis.wait_replicas "
                "replicas acknowledged their write (WAIT timed out, or a Cluster redirect).",
                unreplicated,
            )
        if journal is not None:
            self._expose_journal(journal)
        if directory is not None:
            self._expose_directory(directory)
        if net is not None:
            self._expose_net(net)
        if ratelimit is not None:
            r.counter_reading(
                "gatekeeper_ratelimit_requests_total",
                "ShouldRateLimit requests answered, by overall code (OK, OVER_LIMIT).",
                lambda: _by(tuple(c.value for c in Code), ratelimit.counts),
                ("code",),
            )
            self._expose_ratelimit_stats(ratelimit.stats)
        if ratelimit_watcher is not None:
            self._expose_ratelimit_reload(ratelimit_watcher)

    def _expose_journal(self, journal: DecisionJournal) -> None:
        r = self.registry
        r.gauge_reading(
            "gatekeeper_decisions_lost",
            "Decisions whose Redis reply was lost and that were answered as an error, waiting "
            "for Redis to answer again to be voided if they were applied.",
            lambda: journal.pending,
        )
        r.counter_reading(
            "gatekeeper_decisions_lost_resolved_total",
            "Lost decisions resolved, by what Redis had done: applied (then voided: "
            "counters, spend and billing given back) or not_applied (marked never to apply).",
            lambda: {("applied",): journal.voided, ("not_applied",): journal.unapplied},
            ("result",),
        )
        r.counter_reading(
            "gatekeeper_decisions_lost_dropped_total",
            "Lost decisions beyond what the process holds (100,000): never voided, so billed "
            "if they were applied (logged each).",
            lambda: journal.dropped,
        )

    def _expose_net(self, net: Mapping[str, tuple[NetStats | None, Callable[[], int]]]) -> None:
        def refusals() -> dict[tuple[str, ...], float]:
            found: dict[tuple[str, ...], float] = {}
            for server, (stats, _) in net.items():
                if stats is not None:
                    found.update({(server, r.value): n for r, n in stats.refusals.items()})
            return found

        self.registry.counter_reading(
            "gatekeeper_net_refusals_total",
            "What clients made a server refuse or cut short (docs/hostile-clients.md), by "
            "server (grpc, authz_http) and reason (header_too_large, reset_flood, ...).",
            refusals,
            ("server", "reason"),
        )
        self.registry.gauge_reading(
            "gatekeeper_net_connections",
            "Client connections open now, by server (grpc, authz_http).",
            lambda: {(server,): float(open_()) for server, (_, open_) in net.items()},
            ("server",),
        )

    def _expose_directory(self, stats: Callable[[], DirectoryStats]) -> None:
        r = self.registry
        r.counter_reading(
            "gatekeeper_directory_cache_hits_total",
            "Customer lookups (by id or API key) answered from this process's directory cache.",
            lambda: stats().hits,
        )
        r.counter_reading(
            "gatekeeper_directory_cache_misses_total",
            "Customer lookups that read the customer's record from Redis (or waited for a "
            "read under way). A decision looks its customer up twice.",
            lambda: stats().misses,
        )
        r.counter_reading(
            "gatekeeper_directory_cache_evictions_total",
            "Customers dropped from the directory cache to stay within directory.cache_size.",
            lambda: stats().evictions,
        )
        r.gauge_reading(
            "gatekeeper_directory_cache_entries",
            "Customers held in the directory cache now (at most directory.cache_size).",
            lambda: stats().size,
        )
        r.counter_reading(
            "gatekeeper_directory_compile_failures_total",
            "Directory records that did not compile under the catalog in force (refused like "
            "an unknown customer; the log names the customer and why).",
            lambda: stats().compile_failures,
        )

    def _expose_ratelimit_stats(self, table: StatsTable) -> None:
        r = self.registry
        for name, field, help in RATELIMIT_STATS:
            r.counter_reading(name, help, functools.partial(_stats, table, field), _STATS_LABELS)
        r.counter_reading(
            "gatekeeper_ratelimit_stats_overflow_total",
            f'Limited descriptors counted in a domain\'s descriptor="{OVERFLOW}" series '
            "because the series named from request values reached "
            "settings.ratelimit_metric_series.",
            lambda: table.overflowed,
        )

    def _expose_ratelimit_reload(self, watcher: ConfigWatcher) -> None:
        r = self.registry
        r.counter_reading(
            "gatekeeper_ratelimit_config_reloads_total",
            "Rate limit configs reloaded and installed while serving.",
            lambda: watcher.reloads,
        )
        r.counter_reading(
            "gatekeeper_ratelimit_config_reload_failures_total",
            "Rate limit config reloads rejected (the config in force stayed; see the log).",
            lambda: watcher.failures,
        )
        r.gauge_reading(
            "gatekeeper_ratelimit_config_valid",
            "1 when the rate limit config files loaded the last time they were read, else 0.",
            lambda: 1 if watcher.valid else 0,
        )
        r.gauge_reading(
            "gatekeeper_ratelimit_config_loaded_timestamp_seconds",
            "When the rate limit config in force was loaded, in seconds since the Unix epoch.",
            lambda: watcher.loaded_at,
        )


_STATS_LABELS = ("domain", "descriptor")


def _stats(table: StatsTable, field: str) -> dict[tuple[str, ...], float]:
    series: dict[tuple[str, ...], float] = {}
    for stats in table.series():
        series[(stats.domain, stats.descriptor)] = _field(stats, field)
    return series


def _field(stats: LimitStats, field: str) -> int:
    value = getattr(stats, field)
    assert isinstance(value, int)
    return value
