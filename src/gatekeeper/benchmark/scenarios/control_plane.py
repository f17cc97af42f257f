"""Control plane: the customer directory at 1k / 100k / 1M customers, and admin changes while
decisions run (issue: memory and start time independent of the customer count, measured).

What is measured, per directory size N (`--quick`: 1k and 10k), against a real `gatekeeper
serve` process (1 worker, `GATEKEEPER_DIRECTORY_CACHE_SIZE` = the profile's cache size) on the
bench's Redis, under a fresh key prefix deleted afterwards:

- populate: N customers written with `CustomerRecords.put_many` (one API key each, its SHA-256);
  customers/s and Redis bytes per customer (`used_memory` before and after).
- serve ready: from spawning `gatekeeper serve` to the first 200 on `/readyz` (interpreter
  start and imports included).
- cache hit ratio: decisions (8 connections) for customers drawn from a Zipf(1.1) mix over all
  N, in two halves; the ratio is the second (warm) half's, from serve's own
  `gatekeeper_directory_cache_{hits,misses}_total`.
- RSS (`VmRSS`) after that warm-up, and (at the largest N only: it takes minutes) after a
  decision for each of the min(N, cache size) hottest customers (the cache as full as N allows).
- stall: decisions one at a time on one connection to the ext_authz HTTP port (Zipf mix), in
  paired rounds: quiet, then the same while the admin API makes `change_rate` changes per
  second (in turn: a new API key, a patch of the description, a revocation of a key made
  before; every other change on one of the 100 hottest customers, whose next decision then
  reads the directory again). Added latency is the median over rounds of busy − quiet of the
  same round; the worst single decision is compared with the quiet p99.
- collector: the longest pass of serve's cyclic garbage collector since it started (from its
  `gatekeeper_gc_pause_max_seconds`; a pass stops the event loop, so it bounds from below the
  worst stall a change did not cause), and the passes during the rounds.
- admin latency: create-customer and create-key through the HTTP API, back to back, quiet.

Then the same with a policy file that itself lists `file_customers` customers with keys:
`gatekeeper check-config` time, serve ready on a fresh prefix (the file's customers are
reconciled into the directory), serve ready again (same file: reconciliation skipped), and the
stall and admin figures.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from gatekeeper.benchmark import cpdrive
from gatekeeper.benchmark.cpdrive import ChangeLog, Decisions, ServeProcess
from gatekeeper.benchmark.directory_load import (
    PLAN,
    ZipfMix,
    catalog_text,
    policy_file_text,
    populate,
)
from gatekeeper.benchmark.inprocess import delete_prefix, load
from gatekeeper.benchmark.model import Figure, Target, percentiles_ms, progress
from gatekeeper.benchmark.processes import BenchSetupError, Processes
from gatekeeper.store.keys import KeySpace

__all__ = ["SCENARIO", "ControlPlaneProfile", "ControlPlaneResults", "run_control_plane"]

SCENARIO = "control-plane"
HOT = 100  # every other change is on one of the hottest customers
ADMIN_P99_MS = 20.0
ADDED_P99_MS = 1.0
STALL_MS = 20.0
READY_S, READY_FILE_S, CHECK_FILE_S = 5.0, 15.0, 10.0
RSS_MB = 300.0


@dataclass(frozen=True, slots=True)
class ControlPlaneProfile:
    counts: tuple[int, ...]
    file_customers: int  # 0: no policy-file case
    admin_ops: int  # per kind: create-customer, create-key
    rounds: int  # quiet/busy pairs
    round_seconds: float
    zipf_decisions: int  # both halves together
    fill: bool  # at the largest N: decide for the hottest min(N, cache) customers, RSS again
    cache_size: int = 100_000
    change_rate: float = 50.0
    connections: int = 8
    zipf_s: float = 1.1


@dataclass
class ControlPlaneResults:
    figures: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _target(name: str, measured: float | None, goal: str, met: bool | None) -> Target:
    return Target(name, measured, goal, None if measured is None else met)


@dataclass
class _Run:
    """One serve under test: what every phase needs."""

    serve: ServeProcess
    mix: ZipfMix
    label: str  # "100,000 customers", "100,000 customers in the policy file"
    profile: ControlPlaneProfile
    out: ControlPlaneResults

    def figure(self, name: str, value: float, unit: str, **more: object) -> Figure:
        fig = Figure(SCENARIO, f"{name}, {self.label}", value, unit, **more)  # type: ignore[arg-type]
        self.out.figures.append(fig)
        return fig


async def run_control_plane(
    processes: Processes,
    redis_url: str,
    prefix: str,
    profile: ControlPlaneProfile,
    env: dict[str, str],
) -> ControlPlaneResults:
    out = ControlPlaneResults()
    catalog = processes.workdir / "control-plane.yaml"
    catalog.write_text(catalog_text())
    for n in profile.counts:
        size_prefix = f"{prefix}-cp{n}"
        try:
            await _size(processes, redis_url, size_prefix, catalog, n, profile, env, out)
        finally:
            await delete_prefix(redis_url, size_prefix)
    if profile.file_customers:
        file_prefix = f"{prefix}-cpfile"
        try:
            await _file_case(processes, redis_url, file_prefix, profile, env, out)
        finally:
            await delete_prefix(redis_url, file_prefix)
    return out


async def _used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def _size(
    processes: Processes,
    redis_url: str,
    prefix: str,
    catalog: Path,
    n: int,
    profile: ControlPlaneProfile,
    env: dict[str, str],
    out: ControlPlaneResults,
) -> None:
    label = f"{n:,} customers"
    partitions = load(catalog_text(), redis_url, prefix).settings.redis.partitions
    keys = KeySpace(prefix=prefix, partitions=partitions)
    redis = Redis.from_url(redis_url)
    try:
        progress(f"control-plane: populating {label} (put_many)")
        await delete_prefix(redis_url, prefix)
        before = await _used_memory(redis)
        started = time.perf_counter()
        written = await populate(redis, keys, n, updated_at=datetime.now(UTC).isoformat())
        took = time.perf_counter() - started
        grown = await _used_memory(redis) - before
    finally:
        await redis.aclose()
    if written != n:
        raise BenchSetupError(f"populated {written:,} of {n:,} customers")
    out.figures.append(Figure(
        SCENARIO, f"populate the directory (put_many), {label}", n / took, "customers/s",
        note=f"{took:.1f} s; Redis +{grown / n:,.0f} bytes/customer (record, key pointer, "
             "indexes)",
    ))  # fmt: skip
    progress(f"control-plane: serve over {label}")
    serve = await cpdrive.start_serve(
        processes, name=f"cp-serve-{n}", policy=catalog, redis_url=redis_url, prefix=prefix,
        cache_size=profile.cache_size, env=env,
    )  # fmt: skip
    run = _Run(serve, ZipfMix(n, profile.zipf_s), label, profile, out)
    try:
        ready = run.figure("serve ready (spawn to /readyz 200)", serve.ready_s, "s")
        await _hit_ratio(run)
        rss = run.serve.rss_mb()
        warm = await run.serve.metrics()
        run.figure(
            "serve RSS after warm-up", rss, "MB",
            note=f"{warm.get('gatekeeper_directory_cache_entries', 0):,.0f} customers cached",
        )  # fmt: skip
        if profile.fill and n == max(profile.counts):  # the RSS target's size only: minutes
            rss = await _fill(run, n)
        admin_p99 = await _changes_and_stalls(run, f"new-{n}")
    finally:
        serve.stop()
    if n == max(profile.counts):
        cache = f"{profile.cache_size:,}-entry cache" + ("" if profile.fill else " (not filled)")
        out.targets += [
            _target(f"admin change p99 ≤ {ADMIN_P99_MS:.0f} ms, {label}", admin_p99,
                    f"≤ {ADMIN_P99_MS:.0f} ms", admin_p99 <= ADMIN_P99_MS),
            _target(f"serve ready ≤ {READY_S:.0f} s, {label}", ready.value, f"≤ {READY_S:.0f} s",
                    ready.value <= READY_S),
            _target(f"serve RSS ≤ {RSS_MB:.0f} MB, {label}, {cache}", rss,
                    f"≤ {RSS_MB:.0f} MB", rss <= RSS_MB),
        ]  # fmt: skip


async def _hit_ratio(run: _Run) -> None:
    """Two halves of Zipf-mix decisions; the hit ratio of the second (warm) one."""
    half = max(1, run.profile.zipf_decisions // 2)
    draws = run.mix.draw(2 * half)
    port, conns = run.serve.authz_port, run.profile.connections
    m0 = await run.serve.metrics()
    cold = await cpdrive.decide_many(port, draws[:half], conns)
    m1 = await run.serve.metrics()
    warm = await cpdrive.decide_many(port, draws[half:], conns)
    m2 = await run.serve.metrics()
    hit = "gatekeeper_directory_cache_hits_total"
    miss = "gatekeeper_directory_cache_misses_total"

    def ratio(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
        hits, misses = b.get(hit, 0) - a.get(hit, 0), b.get(miss, 0) - a.get(miss, 0)
        decided = b.get("gatekeeper_decisions_total", 0) - a.get("gatekeeper_decisions_total", 0)
        return hits / max(1.0, hits + misses), misses / max(1.0, decided)

    cold_ratio, _ = ratio(m0, m1)
    warm_ratio, read_share = ratio(m1, m2)
    errors = cold.errors + warm.errors
    run.figure(
        f"directory cache hit ratio, Zipf({run.profile.zipf_s})", 100 * warm_ratio, "%",
        p50_ms=percentiles_ms(warm.latencies_ns)[0], p99_ms=percentiles_ms(warm.latencies_ns)[1],
        note=f"{half:,} decisions ({len(set(draws[half:])):,} customers) after {half:,} to warm "
             f"up ({100 * cold_ratio:.1f} % then); {100 * read_share:.1f} % of these decisions "
             f"read Redis; {len(warm.latencies_ns) / warm.seconds:,.0f} decisions/s on "
             f"{run.profile.connections} connections"
             + (f"; {errors} non-200 answers" if errors else ""),
    )  # fmt: skip
    if errors:
        run.out.notes.append(f"control-plane {run.label}: {errors} decisions not admitted")


async def _fill(run: _Run, n: int) -> float:
    """A decision for each of the min(N, cache size) hottest customers; the RSS then."""
    wanted = min(n, run.profile.cache_size)
    done = await cpdrive.decide_many(run.serve.authz_port, run.mix.hot(wanted), 8)
    rss = run.serve.rss_mb()
    entries = (await run.serve.metrics()).get("gatekeeper_directory_cache_entries", 0)
    run.figure(
        f"serve RSS, cache filled ({entries:,.0f} entries)", rss, "MB",
        note=f"{wanted:,} distinct customers decided in {done.seconds:.0f} s "
             f"({wanted / done.seconds:,.0f}/s, cold)",
    )  # fmt: skip
    return rss


def _changing(mix: ZipfMix) -> Iterator[str]:
    """Customers to change: in turn one of the HOT hottest and one uniformly at random."""
    hot, spread = list(mix.hot(HOT)), mix.uniform()
    for i in range(10**9):
        yield hot[(i // 2) % len(hot)] if i % 2 == 0 else next(spread)


def _p(samples_ns: Sequence[int], q: float) -> float:
    ordered = sorted(samples_ns)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6 if ordered else 0.0


class _OwnPauses:
    """The longest pass of this process's cyclic collector (a gc callback)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.passes = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.passes += 1
        self.longest = max(self.longest, time.perf_counter() - self._started)


async def _rounds(
    run: _Run,
    deciding: list[str],
    changing: Iterator[str],
    changes: ChangeLog,
    quiet: list[Decisions],
    busy: list[Decisions],
) -> None:
    """Quiet, then busy (50 changes/s beside the decisions), `profile.rounds` times."""
    profile = run.profile
    port, api = run.serve.authz_port, run.serve.api_port
    for _ in range(profile.rounds):
        quiet.append(await cpdrive.decide_for(port, deciding, profile.round_seconds))
        decided, _ = await asyncio.gather(
            cpdrive.decide_for(port, deciding, profile.round_seconds),
            cpdrive.make_changes(
                api, changing, rate=profile.change_rate, seconds=profile.round_seconds,
                log=changes,
            ),
        )  # fmt: skip
        busy.append(decided)


async def _changes_and_stalls(run: _Run, new_prefix: str) -> float:
    """Paired quiet/busy rounds, then the admin latencies; returns the admin change p99."""
    profile = run.profile
    api = run.serve.api_port
    deciding = run.mix.draw(20_000)
    changing = _changing(run.mix)
    quiet: list[Decisions] = []
    busy: list[Decisions] = []
    changes = ChangeLog()
    progress(f"control-plane: {profile.rounds} quiet/busy rounds, {run.label}")
    before = await run.serve.metrics()
    # the bench's own collector must not stall what it times: what it holds so far (the mix,
    # what populating left) moved out of its way, and its own passes timed (reported)
    gc.collect()
    gc.freeze()
    own = _OwnPauses()
    gc.callbacks.append(own)
    try:
        await _rounds(run, deciding, changing, changes, quiet, busy)
    finally:
        gc.callbacks.remove(own)
        gc.unfreeze()
    after = await run.serve.metrics()
    q_fig, b_fig, worst = _stall_figures(run, quiet, busy, changes)
    _collector_figure(run, before, after)
    run.figure(
        "longest collector pass in the bench's own process (during the rounds)",
        own.longest * 1e3, "ms", note=f"{own.passes} passes",
    )  # fmt: skip
    created, keyed = await cpdrive.admin_latencies(
        api,
        new_ids=[f"{new_prefix}-{i}" for i in range(profile.admin_ops)],
        key_owners=[c for c, _ in zip(run.mix.uniform(), range(profile.admin_ops), strict=False)],
        plan=PLAN,
    )
    admin_p99 = 0.0
    for name, log in (("create-customer", created), ("create-key", keyed)):
        p50, p99, p999 = percentiles_ms(log.latencies_ns)
        admin_p99 = max(admin_p99, p99)
        total_s = sum(log.latencies_ns) / 1e9
        run.figure(
            f"admin {name} (HTTP API, quiet)", log.made / total_s if total_s else 0.0, "changes/s",
            p50_ms=p50, p99_ms=p99, p999_ms=p999,
            note=f"{log.made} back to back, max {_p(log.latencies_ns, 1.0):.2f} ms"
                 + (f"; failed: {log.failed}" if log.failed else ""),
        )  # fmt: skip
    added = b_fig.added_p99_ms
    run.out.targets += [
        _target(f"decision p99 during {profile.change_rate:.0f} changes/s ≤ quiet p99 + "
                f"{ADDED_P99_MS:.0f} ms, {run.label}", added, f"≤ +{ADDED_P99_MS:.1f} ms",
                added is not None and added <= ADDED_P99_MS),
        _target(f"no decision delayed > {STALL_MS:.0f} ms by a change (max − quiet p99), "
                f"{run.label}", worst - (q_fig.p99_ms or 0.0), f"≤ {STALL_MS:.0f} ms",
                worst - (q_fig.p99_ms or 0.0) <= STALL_MS),
    ]  # fmt: skip
    return admin_p99


def _collector_figure(run: _Run, before: dict[str, float], after: dict[str, float]) -> None:
    """The longest pass of serve's cyclic garbage collector (it stops the event loop: every
    decision in flight waits) since serve started, and the passes during the rounds."""
    passes = "gatekeeper_gc_pause_seconds_count"
    spent = "gatekeeper_gc_pause_seconds_sum"
    longest = after.get("gatekeeper_gc_pause_max_seconds", 0.0)
    run.figure(
        "longest collector pass in serve (since start)", longest * 1e3, "ms",
        note=f"{after.get(passes, 0) - before.get(passes, 0):,.0f} passes (all generations) "
             f"during the rounds, {1e3 * (after.get(spent, 0) - before.get(spent, 0)):,.0f} ms "
             "in all",
    )  # fmt: skip


def _stall_figures(
    run: _Run, quiet: list[Decisions], busy: list[Decisions], changes: ChangeLog
) -> tuple[Figure, Figure, float]:
    def pooled(rounds: list[Decisions]) -> tuple[list[int], float, int]:
        lat = [x for r in rounds for x in r.latencies_ns]
        return lat, sum(r.seconds for r in rounds), sum(r.errors for r in rounds)

    q_lat, q_s, q_err = pooled(quiet)
    b_lat, b_s, b_err = pooled(busy)
    qp = percentiles_ms(q_lat)
    bp = percentiles_ms(b_lat)

    def paired(q: float) -> float:
        return statistics.median(
            _p(b.latencies_ns, q) - _p(a.latencies_ns, q) for a, b in zip(quiet, busy, strict=True)
        )

    def rounds(rs: list[Decisions], q: float) -> str:
        return " / ".join(f"{_p(r.latencies_ns, q):.2f}" for r in rs)

    q_fig = run.figure(
        "decision @ 1 conn, quiet", len(q_lat) / q_s, "decisions/s", p50_ms=qp[0],
        p99_ms=qp[1], p999_ms=qp[2],
        note=f"{len(quiet)} rounds; p99 per round {rounds(quiet, 0.99)} ms; max per round "
             f"{rounds(quiet, 1.0)} ms" + (f"; {q_err} non-200" if q_err else ""),
    )  # fmt: skip
    worst = max((_p(r.latencies_ns, 1.0) for r in busy), default=0.0)
    c50, c99, _ = percentiles_ms(changes.latencies_ns)
    rate = changes.made / sum(r.seconds for r in busy)
    b_fig = run.figure(
        f"decision @ 1 conn, {run.profile.change_rate:.0f} admin changes/s",
        len(b_lat) / b_s, "decisions/s", p50_ms=bp[0], p99_ms=bp[1], p999_ms=bp[2],
        baseline=q_fig.name, ratio=(len(b_lat) / b_s) / q_fig.value if q_fig.value else None,
        added_p50_ms=paired(0.5), added_p99_ms=paired(0.99), added_p999_ms=paired(0.999),
        note=f"paired by round; p99 per round {rounds(busy, 0.99)} ms; max per round "
             f"{rounds(busy, 1.0)} ms; {changes.made} changes ({rate:.1f}/s achieved), change "
             f"p50 {c50:.2f} ms, p99 {c99:.2f} ms"
             + (f"; failed: {changes.failed}" if changes.failed else "")
             + (f"; {b_err} non-200" if b_err else ""),
    )  # fmt: skip
    return q_fig, b_fig, worst


async def _timed_check_config(path: Path) -> float:
    argv = [sys.executable, "-m", "gatekeeper", "check-config", str(path)]
    started = time.perf_counter()
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchSetupError(f"check-config of the generated file failed: {done.stderr[-800:]}")
    return took


async def _file_case(
    processes: Processes,
    redis_url: str,
    prefix: str,
    profile: ControlPlaneProfile,
    env: dict[str, str],
    out: ControlPlaneResults,
) -> None:
    k = profile.file_customers
    label = f"{k:,} customers in the policy file"
    path = processes.workdir / "control-plane-file.yaml"
    path.write_text(policy_file_text(k))
    progress(f"control-plane: {label}: check-config, serve")
    checked = await _timed_check_config(path)
    await delete_prefix(redis_url, prefix)
    serve = await cpdrive.start_serve(
        processes, name="cp-serve-file", policy=path, redis_url=redis_url, prefix=prefix,
        cache_size=profile.cache_size, env=env,
    )  # fmt: skip
    first_ready, first_rss = serve.ready_s, serve.rss_mb()
    serve.stop()
    serve = await cpdrive.start_serve(
        processes, name="cp-serve-file-again", policy=path, redis_url=redis_url, prefix=prefix,
        cache_size=profile.cache_size, env=env,
    )  # fmt: skip
    run = _Run(serve, ZipfMix(k, profile.zipf_s), label, profile, out)
    mb = path.stat().st_size / 1e6
    try:
        run.figure("check-config", checked, "s", note=f"{mb:,.1f} MB of YAML")
        ready = run.figure(
            "serve ready, first start (file reconciled into the directory)",
            first_ready, "s", note=f"RSS {first_rss:,.0f} MB when ready",
        )  # fmt: skip
        run.figure(
            "serve ready, same file again (reconciliation skipped)", serve.ready_s, "s",
            note=f"RSS {serve.rss_mb():,.0f} MB when ready",
        )  # fmt: skip
        await cpdrive.decide_many(serve.authz_port, run.mix.draw(profile.zipf_decisions // 2), 8)
        admin_p99 = await _changes_and_stalls(run, "new-file")
    finally:
        serve.stop()
    out.targets += [
        _target(f"check-config ≤ {CHECK_FILE_S:.0f} s, {label}", checked,
                f"≤ {CHECK_FILE_S:.0f} s", checked <= CHECK_FILE_S),
        _target(f"serve ready ≤ {READY_FILE_S:.0f} s, {label}", ready.value,
                f"≤ {READY_FILE_S:.0f} s", ready.value <= READY_FILE_S),
        _target(f"admin change p99 ≤ {ADMIN_P99_MS:.0f} ms, {label}", admin_p99,
                f"≤ {ADMIN_P99_MS:.0f} ms", admin_p99 <= ADMIN_P99_MS),
    ]  # fmt: skip
