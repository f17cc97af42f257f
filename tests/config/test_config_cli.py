"""`gatekeeper check-config` in process (main(argv)) and once as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.cli import main

HERE = Path(__file__).parent
DEMO = HERE.parents[1] / "src" / "gatekeeper" / "data" / "demo.yaml"
EXAMPLE = HERE.parents[1] / ".." / "shared" / "reference" / "gatekeeper.example.yaml"


def _example() -> Path:
    return EXAMPLE if EXAMPLE.exists() else DEMO


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(_example())], env={}) == 0
    out, err = capsys.readouterr()
    assert out == "ok: 4 features, 2 prices, 2 plans, 2 customers, 3 routes\n"
    assert err == ""


def test_check_config_bad_file_lists_every_issue(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = HERE / "bad" / "customer_overrides.yaml"
    assert main(["check-config", str(fixture)], env={}) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert lines[-1] == "5 errors"
    assert (
        lines[0] == f"{fixture}:16: customers.acme.billing_day: expected an integer 1..31, got 32"
    )
    assert all(line.startswith(f"{fixture}:") for line in lines[:-1])


def test_check_config_yaml_syntax_error(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = HERE / "bad" / "yaml_syntax_error.yaml"
    assert main(["check-config", str(fixture)], env={}) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"{fixture}:6: YAML syntax error")
    assert lines[1] == "1 error"


def test_check_config_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check-config", str(missing)], env={}) == 2
    err = capsys.readouterr().err
    assert f"{missing}: cannot read file" in err


def test_check_config_reports_env_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(DEMO)], env={"GATEKEEPER_SERVER_GRPC_PORT": "x"}) == 2
    assert "environment: GATEKEEPER_SERVER_GRPC_PORT:" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={}) == 2
    assert main(["no-such-command"], env={}) == 2
    assert main(["check-config"], env={}) == 2
    capsys.readouterr()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"], env={}) == 0
    assert capsys.readouterr().out.startswith("gatekeeper ")


def test_subprocess_check_config_on_the_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "check-config", str(_example())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 4 features")


def test_check_config_checks_the_ratelimit_config_serve_would_load(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "rls.yaml"
    rls = (
        "domain: api\ndescriptors:\n  - key: k\n    rate_limit: {unit: %s, requests_per_unit: 3}\n"
    )
    bad.write_text(rls % "fortnight")
    assert main(["check-config", str(DEMO)], env={"GATEKEEPER_RATELIMIT_CONFIG": str(bad)}) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{bad}:4: descriptors[0].rate_limit.unit: invalid rate limit unit")
    assert err[-1] == "1 error"
    missing = tmp_path / "absent"
    assert main(["check-config", str(DEMO)], env={"GATEKEEPER_RATELIMIT_CONFIG": str(missing)}) == 2
    assert f"{missing}: cannot read" in capsys.readouterr().err
    bad.write_text(rls % "minute")
    assert main(["check-config", str(DEMO)], env={"GATEKEEPER_RATELIMIT_CONFIG": str(bad)}) == 0
    assert capsys.readouterr().out.endswith(f"; ratelimit config {bad}: 1 domain\n")


def test_a_verb_imports_only_its_own_module() -> None:
    """check-config does not import the server, the worker or the bench (~1.3 s of a start);
    every verb still loads, under its own name."""
    probe = (
        "import sys\n"
        "from gatekeeper.cli import VERBS, main\n"
        f"assert main(['check-config', {str(_example())!r}], env={{}}) == 0\n"
        "heavy = [m for m in ('gatekeeper.app', 'gatekeeper.benchmark.command',\n"
        "         'gatekeeper.pipeline.commands', 'redis.asyncio') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert [v.load().name for v in VERBS] == [v.name for v in VERBS]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
