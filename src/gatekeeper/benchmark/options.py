"""What a bench run does: scenarios, durations and loads (full or --quick)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gatekeeper.benchmark.scenarios.cluster import ClusterProfile
from gatekeeper.benchmark.scenarios.control_plane import ControlPlaneProfile
from gatekeeper.benchmark.scenarios.engine import EngineProfile
from gatekeeper.benchmark.scenarios.envoy import EnvoyProfile
from gatekeeper.benchmark.scenarios.scale import ScaleProfile

__all__ = ["LABELS", "SCENARIOS", "BenchOptions", "labels", "profile"]

SCENARIOS = ("engine", "envoy", "ratelimit", "workers", "scale", "control-plane", "cluster")

LABELS = {
    "alone": "Envoy alone",
    "noop-http": "Envoy + no-op HTTP authorizer",
    "noop-grpc": "Envoy + no-op grpc.aio authorizer",
    "noop-grpc-lean": "Envoy + no-op lean gRPC authorizer",
    "gk-http": "gatekeeper HTTP mode, {workers} worker(s)",
    "gk-grpc": "gatekeeper gRPC mode, {workers} worker(s)",
    "rls-noop": "Envoy + no-op ShouldRateLimit",
    "rls-gk": "gatekeeper ShouldRateLimit",
}


def labels(workers: int) -> dict[str, str]:
    """LABELS with the worker count of the main gatekeeper filled in."""
    return {k: v.format(workers=workers) for k, v in LABELS.items()}


@dataclass(frozen=True, slots=True)
class BenchOptions:
    quick: bool
    out: Path
    redis_url: str | None
    workers: int
    only: tuple[str, ...]  # empty = every scenario
    engine: EngineProfile
    envoy: EnvoyProfile
    scale: ScaleProfile
    control_plane: ControlPlaneProfile
    cluster: ClusterProfile

    def selected(self, *names: str) -> bool:
        return not self.only or any(n in self.only for n in names)


def profile(
    *,
    quick: bool,
    out: Path,
    redis_url: str | None,
    workers: int,
    only: tuple[str, ...],
    scale_counts: tuple[int, ...] | None = None,
    control_plane_counts: tuple[int, ...] | None = None,
) -> BenchOptions:
    """Full run: 5 s per figure, 32 connections at saturation (1 conn and saturation: the
    median of 3 interleaved rounds), 1, 10k and 1M customers; control plane: 1k, 100k and 1M
    customers in the directory, 4 quiet/busy rounds of 5 s, a file of 100k customers; cluster:
    5 s on 1 and on 3 primaries. --quick (CI): 1 s per figure, 8 connections, 1, 1k and 5k
    customers; control plane: 1k and 10k, 2 rounds of 1 s, a file of 2,000 customers;
    cluster: 1 s each."""
    if quick:
        engine, envoy = EngineProfile(seconds=1), EnvoyProfile(1, 8, 1)
        scale = ScaleProfile(scale_counts or (1, 1_000, 5_000), seconds=1)
        control = ControlPlaneProfile(
            counts=control_plane_counts or (1_000, 10_000), file_customers=2_000,
            admin_ops=30, rounds=2, round_seconds=1.0, zipf_decisions=4_000, fill=False,
        )  # fmt: skip
        cluster = ClusterProfile(seconds=1)
    else:
        engine, envoy = EngineProfile(seconds=5), EnvoyProfile(5, 32, 2, rounds=3)
        scale = ScaleProfile(scale_counts or (1, 10_000, 1_000_000), seconds=5)
        control = ControlPlaneProfile(
            counts=control_plane_counts or (1_000, 100_000, 1_000_000), file_customers=100_000,
            admin_ops=200, rounds=4, round_seconds=5.0, zipf_decisions=40_000, fill=True,
        )  # fmt: skip
        cluster = ClusterProfile(seconds=5)
    return BenchOptions(
        quick, out, redis_url, workers, only, engine, envoy, scale, control, cluster
    )
