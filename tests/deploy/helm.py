"""Running Helm on the chart, offline and isolated: no kubeconfig, no repositories, no network."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import helm_binary

__all__ = ["CHART", "CI_VALUES", "REPO", "SCENARIOS", "helm", "manifests", "render"]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "gatekeeper"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# scenario name → values files; "default" is the chart's values.yaml alone
SCENARIOS: Mapping[str, tuple[Path, ...]] = {
    "default": (),
    **{p.name.removesuffix("-values.yaml"): (p,) for p in CI_VALUES},
}
RELEASE = "gk"
NAMESPACE = "billing"


@cache
def _isolated_env() -> Mapping[str, str]:
    home = Path(tempfile.mkdtemp(prefix="gatekeeper-helm-"))
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),  # never a cluster
    }


def helm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run helm with `args`; the result is returned whatever the exit code."""
    return subprocess.run(
        [helm_binary(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(_isolated_env()),
        check=False,
    )


def render(
    values_files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    *,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart as release gk in namespace billing."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
    for path in values_files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return helm(*args)


@cache
def manifests(scenario: str) -> tuple[dict[str, Any], ...]:
    """The rendered documents of a scenario (see SCENARIOS); fails the test if Helm fails."""
    result = render(SCENARIOS[scenario])
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
