"""`gatekeeper bench --quick` end to end: real Redis, Envoys, gatekeeper serve, wrk (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

GATEKEEPER = [sys.executable, "-m", "gatekeeper"]

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_quick_bench_runs_in_time_and_finds_no_violation(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [*GATEKEEPER, "bench", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < 180, f"bench --quick took {elapsed:.0f} s"
    for name in ("latest.json", "latest.md", "latest.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(list(tmp_path.glob("bench-*.json"))) == 1
    doc = json.loads((tmp_path / "latest.json").read_text())
    correctness = doc["correctness"]
    assert correctness["violations"] == []
    assert correctness["overshoot"] == 0 and correctness["lost"] == 0
    # every load level of every gatekeeper configuration was checked, both kinds of limit
    levels = {(c["scenario"], c["level"], c["kind"]) for c in correctness["checks"]}
    for scenario in ("gk-http", "gk-grpc", "gk-http-w2"):
        for level in ("1 conn", "50 %", "saturation"):
            assert {(scenario, level, "hard"), (scenario, level, "spend")} <= levels
    assert all(c["admitted"] == 20 for c in correctness["checks"] if c["kind"] == "hard")
    assert len(correctness["comparisons"]) == 5
    assert all(c["equal"] for c in correctness["comparisons"])
    names = {f["name"] for f in doc["figures"]}
    assert any(n.startswith("Envoy alone @ saturation") for n in names)
    assert any(n.startswith("engine.decide()") for n in names)
    assert any(n.startswith("Redis bytes per counter") for n in names)
    # control plane at 1k and 10k customers, and a policy file listing 2,000
    for size in ("1,000 customers", "10,000 customers", "2,000 customers in the policy file"):
        assert f"decision @ 1 conn, quiet, {size}" in names
        assert f"decision @ 1 conn, 50 admin changes/s, {size}" in names
    assert "directory cache hit ratio, Zipf(1.1), 10,000 customers" in names
    control = [t for t in doc["targets"] if "customers" in t["name"]]
    assert len(control) >= 9 and all(t["met"] is not None for t in control)
    assert "correctness: 0 violation(s)" in proc.stdout


def test_bench_without_wrk_says_so_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no wrk on this PATH
    proc = subprocess.run(
        [*GATEKEEPER, "bench", "--quick", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2
    assert "wrk not found" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_quick_cluster_bench_measures_1_and_3_primaries(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*GATEKEEPER, "bench", "--quick", "--only", "cluster", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = {f["name"]: f for f in json.loads((tmp_path / "latest.json").read_text())["figures"]}
    for label in ("1 primary", "3 primaries"):
        assert figures[f"decisions/s, {label}"]["value"] > 0
        assert figures[f"Redis CPU per decision, {label}"]["value"] > 0
    assert figures["decisions/s, 3 primaries"]["baseline"] == "decisions/s, 1 primary"
    # every primary served decisions: three shares in the note
    assert figures["Redis CPU per decision, 3 primaries"]["note"].count("% of decisions") == 3
    spread = figures["customers per primary, max/min, 1024 partitions"]
    assert 1.0 <= spread["value"] < 1.1 and spread["note"].startswith("10,000 customers")
