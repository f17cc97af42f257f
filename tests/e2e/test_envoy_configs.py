"""Every bootstrap shipped in envoy/ passes `envoy --mode validate`."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.harness import ENVOY_DIR, envoy_binary

CONFIGS = sorted(p.name for p in ENVOY_DIR.glob("*.yaml"))


def test_there_are_configs() -> None:
    assert "front-proxy.yaml" in CONFIGS


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates(name: str) -> None:
    result = subprocess.run(
        [
            envoy_binary(),
            "--mode",
            "validate",
            "-c",
            str(ENVOY_DIR / name),
            "--disable-hot-restart",
            "-l",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "OK" in result.stdout
