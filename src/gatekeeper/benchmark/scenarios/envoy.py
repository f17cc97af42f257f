"""Through Envoy: requests/s and added latency of each authorizer beside Envoy alone, same run.

Every configuration is a front Envoy (`--concurrency 2`) derived from a shipped bootstrap, in
front of an Envoy `direct_response` upstream. Each is driven by wrk at three loads: 1 connection
(one request at a time), saturation (N connections flat out), and ~50 % of its own saturation
rate (wrk `delay()`, see loadgen). Envoy alone is measured at the same three loads — at 50 %,
at the same rate, right after — so every figure has its ratio and its added latency.

1 connection and saturation, where the targets' latency and throughput ratios come from, are
measured in interleaved rounds before anything else: each round drives Envoy alone and every
configuration once at each of the two loads, in turn, so a drift of a noisy machine hits all of
them alike; each such figure is the round with the median requests/s (its latencies are that
run's), every round's requests/s is in its note. Its added latency is paired by round: the
median over the rounds of (its percentile − Envoy alone's in the same round).

Configurations whose authorizer is gatekeeper are also checked at each load: while wrk drives
the hot customer, a hard-limited and a spend-capped customer are driven past their limits
(see correctness).
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import aiohttp
from redis.asyncio import Redis

from gatekeeper.benchmark import correctness as cx
from gatekeeper.benchmark.loadgen import Load, WrkResult, connections_for_rate, run_wrk
from gatekeeper.benchmark.model import Check, Comparison, Figure, Results, progress
from gatekeeper.benchmark.policy import (
    HARD_LIMIT,
    HOT,
    ROUTE_PATH,
    SPEND_CAP,
    BenchPolicy,
    api_key,
)
from gatekeeper.engine import DecisionEngine, LimitKind
from gatekeeper.money import parse_nano
from gatekeeper.store.keys import KeySpace

__all__ = ["EnvoyProfile", "Target", "ThroughEnvoy", "median_run", "paired_added"]

HALF_DELAY_MS = 2
CAPPED_BURST = 30


@dataclass(frozen=True, slots=True)
class EnvoyProfile:
    seconds: float  # per measured load
    saturation: int  # wrk connections at saturation
    check_seconds: float  # wrk load under each correctness burst
    burst_concurrency: int = 16
    rounds: int = 1  # interleaved rounds at 1 conn and saturation; a figure = the median round


@dataclass(frozen=True, slots=True)
class Target:
    """Where one configuration's Envoy listens."""

    key: str  # e.g. "gk-http"
    label: str
    scenario: str  # envoy | ratelimit | workers
    url: str
    checked: bool = False  # gatekeeper behind it: correctness checks at each load
    vs: str | None = None  # saturation ratio against this configuration, not Envoy alone
    noop: str | None = None  # the no-op authorizer of the same transport (noted at saturation)


@dataclass(frozen=True, slots=True)
class _Level:
    label: str
    load: Load


def request_headers(key: str) -> dict[str, str]:
    if key.startswith("rls"):
        return {"x-client-id": "bench"}
    return {"x-api-key": api_key(HOT), "x-token-count": "20"}


class ThroughEnvoy:
    """Measures `targets` against Envoy alone (`alone_url`), appending to `results`."""

    def __init__(
        self,
        *,
        alone_url: str,
        profile: EnvoyProfile,
        results: Results,
        engine: DecisionEngine,
        redis: Redis,
        keys: KeySpace,
        policy: BenchPolicy,
    ) -> None:
        self._alone = alone_url
        self._profile = profile
        self._results = results
        self._engine = engine
        self._redis = redis
        self._keys = keys
        self._fresh = self._fresh_customers(policy)
        self._alone_figs: dict[str, Figure] = {}
        self._sat: dict[str, Figure] = {}
        # rounds(): (target key, "1 conn" | "saturation") -> one run per round
        self._runs: dict[tuple[str, str], list[WrkResult]] = {}

    def _fresh_customers(self, policy: BenchPolicy) -> Iterator[tuple[str, str]]:
        """(hard, capped) pairs never used before, off the hot customer's partition (its stream
        is long: reading a small one keeps the event count quick)."""
        hot = self._keys.partition(HOT)
        for i in range(policy.pool):
            hard, capped = policy.hard(i), policy.capped(i)
            if hot not in (self._keys.partition(hard), self._keys.partition(capped)):
                yield hard, capped

    @property
    def _sat_label(self) -> str:
        return f"saturation ({self._profile.saturation} conns)"

    async def _wrk(
        self, url: str, key: str, load: Load, seconds: float, note: str = ""
    ) -> WrkResult:
        progress(f"{key} @ {load.label}{note}")
        return await run_wrk(
            url + ROUTE_PATH, load, seconds=seconds, method="POST", headers=request_headers(key)
        )

    def _figure(self, target: Target, level: str, r: WrkResult, alone: Figure | None) -> Figure:
        vs = self._sat.get(target.vs or "") if level.startswith("saturation") else None
        base = vs or alone
        # measured in rounds: the median of each round's difference to Envoy alone's
        added = paired_added(
            self._runs.get((target.key, _level_key(level)), []),
            self._runs.get(("alone", _level_key(level)), []),
        )
        if added is None and alone is not None:
            added = _minus(r, alone)
        return Figure(
            scenario=target.scenario,
            name=f"{target.label} @ {level}",
            value=r.rps,
            unit="req/s",
            p50_ms=r.p50_ms,
            p99_ms=r.p99_ms,
            p999_ms=r.p999_ms,
            baseline=base.name if base else None,
            ratio=r.rps / base.value if base and base.value else None,
            added_p50_ms=added[0] if added else None,
            added_p99_ms=added[1] if added else None,
            added_p999_ms=added[2] if added else None,
            note=self._note(target, level, r),
        )

    def _note(self, target: Target, level: str, r: WrkResult) -> str:
        bits = [_errors_note(r)] if _errors_note(r) else []
        bits += _rounds_note(self._runs.get((target.key, _level_key(level)), []))
        noop = self._sat.get(target.noop or "") if level.startswith("saturation") else None
        if noop is not None and noop.value:
            bits.append(f"{r.rps / noop.value:.2f} of {target.noop}")
        if target.vs and level.startswith("saturation"):
            bits.append("ratio vs " + target.vs)
        return "; ".join(bits)

    async def _alone_at(self, label: str, load: Load) -> Figure:
        r = self._median("alone", label) or await self._wrk(
            self._alone, "alone", load, self._profile.seconds
        )
        notes = [_errors_note(r)] if _errors_note(r) else []
        notes += _rounds_note(self._runs.get(("alone", _level_key(label)), []))
        fig = Figure("envoy", f"Envoy alone @ {label}", r.rps, "req/s", r.p50_ms, r.p99_ms,
                     r.p999_ms, note="; ".join(notes))  # fmt: skip
        self._results.figures.append(fig)
        return fig

    async def rounds(self, targets: Sequence[Target]) -> None:
        """Envoy alone and every target at 1 connection and at saturation, `profile.rounds`
        times interleaved (each round measures each once at each load, in order). baseline()
        and measure() then take the median round instead of measuring those loads again."""
        p = self._profile
        loads = (Load("1 conn", 1), Load(self._sat_label, p.saturation))
        order = [("alone", self._alone), *((t.key, t.url) for t in targets)]
        for i in range(p.rounds):
            for key, url in order:
                for load in loads:
                    note = f", round {i + 1}/{p.rounds}" if p.rounds > 1 else ""
                    r = await self._wrk(url, key, load, p.seconds, note)
                    self._runs.setdefault((key, _level_key(load.label)), []).append(r)

    def _median(self, key: str, level: str) -> WrkResult | None:
        runs = self._runs.get((key, _level_key(level)))
        return median_run(runs) if runs else None

    async def baseline(self) -> None:
        """Envoy alone at 1 connection and at saturation (the run's reference figures)."""
        self._alone_figs["1 conn"] = await self._alone_at("1 conn", Load("1 conn", 1))
        sat = self._sat_label
        self._alone_figs["saturation"] = await self._alone_at(
            sat, Load(sat, self._profile.saturation)
        )

    async def measure(self, target: Target) -> None:
        """Three loads (and their checks when `target.checked`)."""
        p = self._profile
        one = self._median(target.key, "1 conn") or await self._wrk(
            target.url, target.key, Load("1 conn", 1), p.seconds
        )
        self._results.figures.append(
            self._figure(target, "1 conn", one, self._alone_figs["1 conn"])
        )
        sat_label = self._sat_label
        sat = self._median(target.key, sat_label) or await self._wrk(
            target.url, target.key, Load(sat_label, p.saturation), p.seconds
        )
        sat_fig = self._figure(target, sat_label, sat, self._alone_figs["saturation"])
        self._results.figures.append(sat_fig)
        self._sat[target.key] = sat_fig
        rate = sat.rps / 2
        conns = connections_for_rate(rate, one.p50_ms, HALF_DELAY_MS)
        half_label = f"50 % (~{rate:,.0f} req/s offered)"
        half_load = Load(half_label, conns, HALF_DELAY_MS)
        half = await self._wrk(target.url, target.key, half_load, p.seconds)
        alone_half = await self._alone_at(
            f"~{rate:,.0f} req/s (as {target.key} at 50 %)", half_load
        )
        self._results.figures.append(self._figure(target, half_label, half, alone_half))
        if target.checked:
            for level in (_Level("1 conn", Load("1 conn", 1)), _Level("50 %", half_load),
                          _Level("saturation", Load(sat_label, p.saturation))):  # fmt: skip
                self._results.checks.extend(await self.check(target, level))

    async def check(self, target: Target, level: _Level) -> list[Check]:
        """Drive one fresh hard-limited and one fresh capped customer past their limits while
        wrk holds `level` on the hot customer; count answers, counters and events."""
        hard, capped = next(self._fresh)
        progress(f"{target.key}: correctness at {level.label}")
        p = self._profile
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            load = asyncio.create_task(
                self._wrk(target.url, target.key, level.load, p.check_seconds)
            )
            hard_tally, cap_tally = await asyncio.gather(
                cx.burst(session, target.url, hard, requests=3 * HARD_LIMIT,
                         concurrency=p.burst_concurrency, denial=429),
                cx.burst(session, target.url, capped, requests=CAPPED_BURST,
                         concurrency=p.burst_concurrency, denial=402),
            )  # fmt: skip
            await load
        used = await cx.counter(self._engine, hard, LimitKind.QUOTA)
        quantity, _, _ = await cx.stream_usage(self._redis, self._keys, hard)
        spent = await cx.counter(self._engine, capped, LimitKind.SPEND)
        _, events, amount = await cx.stream_usage(self._redis, self._keys, capped)
        cap = parse_nano(SPEND_CAP)
        common = {"scenario": target.key, "level": level.label}
        return [
            cx.make_check(**common, customer=hard, kind="hard", limit=HARD_LIMIT, tally=hard_tally,
                          counter_value=used, events_value=quantity, expected=hard_tally.admitted,
                          violations=cx.hard_violations(hard_tally, limit=HARD_LIMIT, counter=used,
                                                        event_quantity=quantity)),
            cx.make_check(**common, customer=capped, kind="spend", limit=cap, tally=cap_tally,
                          counter_value=spent, events_value=amount, expected=amount,
                          violations=cx.spend_violations(cap_tally, cap_nano=cap, spent_nano=spent,
                                                         event_amount_nano=amount, events=events)),
        ]  # fmt: skip

    async def compare(self, left: Target, right: Target) -> list[Comparison]:
        """The same scripted requests through both transports, each with fresh customers."""
        scripts: dict[str, list[list[str]]] = {left.key: [], right.key: []}
        for target in (left, right):
            hard, capped = next(self._fresh)
            plan: Sequence[tuple[str, int, bool]] = (
                (hard, HARD_LIMIT + 2, True),
                (capped, 12, True),
                (HOT, 1, False),
                ("outsider", 1, True),
                ("nobody", 1, True),
            )
            async with aiohttp.ClientSession() as session:
                for customer, count, with_values in plan:
                    answers = []
                    for _ in range(count):
                        async with session.post(
                            target.url + ROUTE_PATH, headers={"x-api-key": api_key(customer)}
                        ) as response:
                            body = await response.read()
                            answers.append(cx.normalize(response.status, response.headers, body,
                                                        with_values=with_values))  # fmt: skip
                    scripts[target.key].append(answers)
        names = ("hard limit, past the limit", "spend cap, past the cap", "hot customer",
                 "not entitled (403)", "unknown key (401)")  # fmt: skip
        return [
            Comparison(name, left.key, right.key, tuple(a), tuple(b))
            for name, a, b in zip(names, scripts[left.key], scripts[right.key], strict=True)
        ]


def median_run(runs: Sequence[WrkResult]) -> WrkResult:
    """The run with the median requests/s (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def paired_added(
    runs: Sequence[WrkResult], alone: Sequence[WrkResult]
) -> tuple[float, float, float] | None:
    """Added latency (p50, p99, p99.9) from interleaved rounds: in each round, the run's
    percentile minus Envoy alone's of the same round; the median of those differences.

    Pairing within a round cancels what drifts between rounds (a neighbour on the host hits
    both runs of a round alike). None unless both have the same number (>= 2) of rounds."""
    if len(runs) < 2 or len(runs) != len(alone):
        return None
    return (
        statistics.median(r.p50_ms - a.p50_ms for r, a in zip(runs, alone, strict=True)),
        statistics.median(r.p99_ms - a.p99_ms for r, a in zip(runs, alone, strict=True)),
        statistics.median(r.p999_ms - a.p999_ms for r, a in zip(runs, alone, strict=True)),
    )


def _minus(r: WrkResult, alone: Figure) -> tuple[float, float, float] | None:
    if alone.p50_ms is None or alone.p99_ms is None or alone.p999_ms is None:
        return None
    return r.p50_ms - alone.p50_ms, r.p99_ms - alone.p99_ms, r.p999_ms - alone.p999_ms


def _level_key(label: str) -> str:
    """ "1 conn" or "saturation" for the labels of those loads; the label itself otherwise."""
    return "saturation" if label.startswith("saturation") else label


def _rounds_note(runs: Sequence[WrkResult]) -> list[str]:
    if len(runs) < 2:
        return []
    return [f"median of {len(runs)} rounds: " + " / ".join(f"{r.rps:,.0f}" for r in runs)]


def _errors_note(r: WrkResult) -> str:
    bits = []
    if r.non_2xx:
        bits.append(f"{r.non_2xx} non-2xx")
    if r.errors:
        bits.append(f"{r.errors} socket errors/timeouts")
    return ", ".join(bits)
