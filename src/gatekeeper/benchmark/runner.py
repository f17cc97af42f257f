"""One bench run: start what it needs on 127.0.0.1, run the chosen scenarios, report, stop all.

Order: engine, through Envoy (alone; no-op and gatekeeper per transport; answers compared),
rate limit service, workers, scale, control plane, cluster. Every child process belongs to
`Processes`, closed in a `finally` (also on Ctrl-C), but the cluster scenario's local Redis
Clusters, which stop themselves in theirs. The bench's own keys live under a fresh prefix and
are deleted.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from gatekeeper.benchmark.bootstraps import front, upstream
from gatekeeper.benchmark.inprocess import delete_prefix, load, running_app
from gatekeeper.benchmark.model import Results, progress
from gatekeeper.benchmark.options import LABELS, BenchOptions
from gatekeeper.benchmark.policy import BenchPolicy, ratelimit_config_text
from gatekeeper.benchmark.processes import Processes
from gatekeeper.benchmark.scenarios.cluster import run_cluster
from gatekeeper.benchmark.scenarios.control_plane import run_control_plane
from gatekeeper.benchmark.scenarios.engine import run_engine
from gatekeeper.benchmark.scenarios.envoy import Target, ThroughEnvoy
from gatekeeper.benchmark.scenarios.scale import run_scale
from gatekeeper.benchmark.stack import Authorizer, start_envoy, start_gatekeeper, start_noop
from gatekeeper.store.keys import KeySpace

__all__ = ["run"]


@dataclass
class _Context:
    options: BenchOptions
    processes: Processes
    redis_url: str
    prefix: str
    env: dict[str, str]
    policy: BenchPolicy
    policy_path: Path
    ratelimit_path: Path


async def run(options: BenchOptions, processes: Processes, env: dict[str, str]) -> Results:
    """Run the scenarios of `options` (children owned by `processes`); returns the results."""
    results = Results()
    redis_url = options.redis_url or processes.redis()
    prefix = f"gkbench-{uuid.uuid4().hex[:8]}"
    policy = BenchPolicy()
    policy_path = processes.workdir / "policy.yaml"
    policy_path.write_text(policy.text())
    rl_dir = processes.workdir / "ratelimit"
    rl_dir.mkdir()
    (rl_dir / "bench.yaml").write_text(ratelimit_config_text())
    ctx = _Context(options, processes, redis_url, prefix, env, policy, policy_path, rl_dir)
    try:
        if options.selected("engine"):
            progress("engine: raw EVALSHA, engine.decide()")
            results.figures += await run_engine(redis_url, f"{prefix}-engine", options.engine)
        if options.selected("envoy", "ratelimit", "workers"):
            await _through_envoy(ctx, results)
        if options.selected("scale"):
            progress(f"scale: {', '.join(f'{n:,}' for n in options.scale.counts)} customers")
            results.figures += await run_scale(redis_url, f"{prefix}-scale", options.scale)
        if options.selected("control-plane"):
            control = await run_control_plane(
                processes, redis_url, f"{prefix}-cp", options.control_plane, env
            )
            results.figures += control.figures
            results.targets += control.targets
            results.notes += control.notes
        if options.selected("cluster"):
            results.figures += await run_cluster(f"{prefix}-cl", options.cluster)
    finally:
        await delete_prefix(redis_url, prefix)
    return results


@contextlib.asynccontextmanager
async def _counters(ctx: _Context) -> AsyncIterator[tuple[Redis, KeySpace, object]]:
    async with running_app(ctx.policy.text(), ctx.redis_url, ctx.prefix) as engine:
        redis = Redis.from_url(ctx.redis_url)
        try:
            partitions = load(
                ctx.policy.text(), ctx.redis_url, ctx.prefix
            ).settings.redis.partitions
            yield redis, KeySpace(prefix=ctx.prefix, partitions=partitions), engine
        finally:
            await redis.aclose()


def _gatekeeper(ctx: _Context, name: str, workers: int) -> Authorizer:
    return start_gatekeeper(
        ctx.processes, name=name, policy=ctx.policy_path, ratelimit_config=ctx.ratelimit_path,
        redis_url=ctx.redis_url, prefix=ctx.prefix, workers=workers, env=ctx.env,
    )  # fmt: skip


async def _through_envoy(ctx: _Context, results: Results) -> None:
    o = ctx.options
    procs = ctx.processes
    up = start_envoy(procs, upstream(), name="upstream", concurrency=1)
    up_port = up.listener_port

    def envoy(kind: str, name: str, authz_port: int = 0) -> str:
        bootstrap = front(kind, upstream_port=up_port, authz_port=authz_port)
        return start_envoy(procs, bootstrap, name=name).url

    progress("through Envoy: starting Envoys, no-op authorizers, gatekeeper serve")
    alone = envoy("alone", "alone")
    noop = start_noop(procs, ctx.env)
    gk = _gatekeeper(ctx, "gatekeeper", o.workers)
    gk_http = Target("gk-http", LABELS["gk-http"].format(workers=o.workers), "envoy",
                     envoy("http", "gk-http", gk.http_port), checked=True,
                     noop="noop-http")  # fmt: skip
    # every configuration of the run, in the order measured (also in each of the rounds)
    targets: list[Target] = []
    if o.selected("envoy"):
        targets += [
            Target("noop-http", LABELS["noop-http"], "envoy",
                   envoy("http", "noop-http", noop.http_port)),
            gk_http,
            Target("noop-grpc", LABELS["noop-grpc"], "envoy",
                   envoy("grpc", "noop-grpc", noop.grpc_port)),
            Target("gk-grpc", LABELS["gk-grpc"].format(workers=o.workers), "envoy",
                   envoy("grpc", "gk-grpc", gk.grpc_port), checked=True, noop="noop-grpc"),
            # the ceiling of the transport serve runs on by default, for reference
            Target("noop-grpc-lean", LABELS["noop-grpc-lean"], "envoy",
                   envoy("grpc", "noop-grpc-lean", noop.lean_grpc_port)),
        ]  # fmt: skip
    if o.selected("ratelimit"):
        targets += [
            Target("rls-noop", LABELS["rls-noop"], "ratelimit",
                   envoy("rls", "rls-noop", noop.grpc_port)),
            Target("rls-gk", LABELS["rls-gk"], "ratelimit", envoy("rls", "rls-gk", gk.grpc_port),
                   noop="rls-noop"),
        ]  # fmt: skip
    if o.selected("workers"):
        if not o.selected("envoy"):
            targets.append(gk_http)
        other = 2 if o.workers != 2 else 1
        gk_other = _gatekeeper(ctx, f"gatekeeper-w{other}", other)
        targets.append(Target(
            f"gk-http-w{other}", LABELS["gk-http"].format(workers=other), "workers",
            envoy("http", f"gk-http-w{other}", gk_other.http_port), checked=True, vs="gk-http",
        ))  # fmt: skip
    async with _counters(ctx) as (redis, keys, engine):
        bench = ThroughEnvoy(
            alone_url=alone, profile=o.envoy, results=results, engine=engine,  # type: ignore[arg-type]
            redis=redis, keys=keys, policy=ctx.policy,
        )  # fmt: skip
        await bench.rounds(targets)
        await bench.baseline()
        for target in targets:
            await bench.measure(target)
        by_key = {t.key: t for t in targets}
        if "gk-http" in by_key and "gk-grpc" in by_key:
            results.comparisons += await bench.compare(by_key["gk-http"], by_key["gk-grpc"])
