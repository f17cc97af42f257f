"""The processes behind the through-Envoy figures: gatekeeper serve, the no-op authorizers, Envoys.

Each runs as its own process on 127.0.0.1 (as deployed), owned by the run's `Processes`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatekeeper.benchmark.inprocess import bench_env
from gatekeeper.benchmark.noop import READY
from gatekeeper.benchmark.processes import Processes, free_port, wait_until
from gatekeeper.envoy_runner import EnvoyProcess

__all__ = ["Authorizer", "start_envoy", "start_gatekeeper", "start_noop"]

SERVE_READY = "gatekeeper: serving"


@dataclass(frozen=True, slots=True)
class Authorizer:
    name: str
    grpc_port: int
    http_port: int  # ext_authz HTTP mode
    lean_grpc_port: int = 0  # the no-op's gRPC services on the lean server (0: none)
    pid: int = 0  # its process (serve's parent with --workers > 1)


def _ready_lines(path: Path, marker: str) -> int:
    try:
        return path.read_text(errors="replace").count(marker)
    except OSError:
        return 0


def start_gatekeeper(
    processes: Processes,
    *,
    name: str,
    policy: Path,
    ratelimit_config: Path,
    redis_url: str,
    prefix: str,
    workers: int,
    env: dict[str, str],
) -> Authorizer:
    """`gatekeeper serve --workers N` on free ports; returns once every worker is serving."""
    grpc_port, http_port, api_port = free_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "gatekeeper", "serve", "--config", str(policy),
        "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--authz-http-port", str(http_port), "--http-port", str(api_port),
        "--workers", str(workers), "--log-level", "WARNING",
    ]  # fmt: skip
    child_env = {**env, **bench_env(redis_url, prefix, str(ratelimit_config))}
    child = processes.spawn(name, argv, child_env)
    wait_until(
        lambda: _ready_lines(child.log_path, SERVE_READY) >= workers,
        what=f"gatekeeper serve ({name}); log: {child.log_path}",
        timeout_s=60,
        alive=child.alive,
    )
    return Authorizer(name, grpc_port, http_port, pid=child.proc.pid)


def start_noop(processes: Processes, env: dict[str, str]) -> Authorizer:
    grpc_port, http_port, lean_port = free_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "gatekeeper.benchmark.noop",
        "--grpc-port", str(grpc_port), "--http-port", str(http_port),
        "--lean-grpc-port", str(lean_port),
    ]  # fmt: skip
    child = processes.spawn("noop", argv, env)
    wait_until(
        lambda: _ready_lines(child.log_path, READY) >= 1,
        what=f"no-op authorizers; log: {child.log_path}",
        timeout_s=60,
        alive=child.alive,
    )
    return Authorizer("noop", grpc_port, http_port, lean_port, pid=child.proc.pid)


def start_envoy(
    processes: Processes, bootstrap: dict[str, Any], *, name: str, concurrency: int = 2
) -> EnvoyProcess:
    """An Envoy (`--concurrency`, `--disable-hot-restart`) of `bootstrap`, stopped with the run."""
    envoy = EnvoyProcess(
        bootstrap, workdir=processes.workdir / f"envoy-{name}", concurrency=concurrency
    )
    processes.on_close(envoy.stop)
    envoy.start()
    return envoy
