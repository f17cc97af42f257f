"""Generated bootstraps pass `envoy --mode validate` (the real binary), with no deprecation."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gatekeeper.envoy_runner import EnvoyError, envoy_binary
from gatekeeper.envoyconfig.build import bootstrap_yaml
from gatekeeper.envoyconfig.command import parse_options

# both modes x settlement x rate limit x tracing, bounded: every flag on and off at least once
COMBINATIONS: dict[str, list[str]] = {
    "http": ["--mode", "http"],
    "http-bare": ["--mode", "http", "--no-settlement", "--unmetered", "", "--plan-headers", ""],
    "http-rl-otel": ["--mode", "http", "--rate-limit", "--otel-collector", "127.0.0.1:4318"],
    "http-nosettle-rl": ["--mode", "http", "--no-settlement", "--rate-limit",
                         "--failure-mode-allow", "--authz-timeout", "2s"],
    "grpc": ["--mode", "grpc", "--route-feature", "/v1/images=chat_requests:5"],
    "grpc-bare": ["--mode", "grpc", "--no-settlement", "--admin", "none"],
    "grpc-rl-otel": ["--mode", "grpc", "--rate-limit", "--otel-collector", "otel.example:4318",
                     "--rate-limit-descriptors", "customer=x-gatekeeper-customer"],
    "grpc-otel-dns": ["--mode", "grpc", "--no-settlement", "--otel-collector", "127.0.0.1:4318",
                      "--gatekeeper", "gatekeeper.default.svc", "--upstream", "api.internal:80"],
    "sidecar-http": ["--mode", "http", "--sidecar", "--otel-collector", "127.0.0.1:4318"],
    "rate-limit-only": ["--no-ext-authz", "--no-settlement", "--rate-limit",
                        "--listen", "[::1]:0"],
}  # fmt: skip


def _validate(binary: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--mode", "validate", "--disable-hot-restart", "-c", str(path), "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_generated_combinations_validate(tmp_path: Path) -> None:
    try:
        binary = str(envoy_binary())
    except EnvoyError as exc:
        pytest.skip(str(exc))
    paths = []
    for name, argv in COMBINATIONS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(bootstrap_yaml(parse_options(argv)))
        paths.append(path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda p: _validate(binary, p), paths))
    for path, result in zip(paths, results, strict=True):
        output = result.stdout + result.stderr
        assert result.returncode == 0 and "OK" in result.stdout, f"{path.name}: {output[-2000:]}"
        assert "deprecated" not in output.lower(), f"{path.name}: {output[-2000:]}"
