"""deploy/Dockerfile: hadolint-clean, and the properties the chart relies on.

It is not built here (no container engine); these checks read it."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.deploy.helm import REPO
from tests.deploy.tools import ToolUnavailable, hadolint_binary

DOCKERFILE = REPO / "deploy" / "Dockerfile"
TEXT = DOCKERFILE.read_text()
# instructions with their continuation lines joined, comments dropped
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", TEXT).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in INSTRUCTIONS:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_hadolint_finds_nothing() -> None:
    try:
        hadolint = hadolint_binary()
    except ToolUnavailable as exc:
        pytest.skip(str(exc))
    result = subprocess.run(
        [hadolint, "--format", "json", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, json.loads(result.stdout or "[]") or result.stderr


def test_multi_stage_from_a_slim_python_311() -> None:
    stages = _stages()
    assert len(stages) >= 2
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", TEXT, flags=re.MULTILINE)
    assert arg, "the base image is one ARG"
    image = arg.group(1)
    assert re.fullmatch(r"python:3\.11[.\d]*-slim(-\w+)?", image), image
    for stage in stages:
        assert stage[0].split()[1] in {"${PYTHON_IMAGE}", image}


def test_no_latest_tag_and_no_remote_add() -> None:
    assert ":latest" not in TEXT
    assert not any(line.upper().startswith("ADD ") for line in INSTRUCTIONS)
    assert not re.search(r"\b(curl|wget)\b", TEXT)


def test_wheel_built_in_the_first_stage_installed_in_the_last() -> None:
    build, *_, final = _stages()
    assert any("pip wheel" in line for line in build)
    install = [line for line in final if "pip install" in line]
    assert install and "--no-index" in install[0] and "from=build" in install[0]
    # no compiler or source tree in the final stage
    assert not any(re.search(r"apt-get|gcc|build-essential|COPY src", line) for line in final)


def test_final_stage_runs_gatekeeper_as_a_numeric_non_root_user() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    entry = [line for line in final if line.upper().startswith("ENTRYPOINT ")]
    assert entry and json.loads(entry[-1].split(None, 1)[1]) == ["gatekeeper"]


def test_uid_matches_the_chart() -> None:
    values = (REPO / "charts" / "gatekeeper" / "values.yaml").read_text()
    final = _stages()[-1]
    uid = next(line.split()[1] for line in final if line.upper().startswith("USER ")).split(":")[0]
    assert f"runAsUser: {uid}" in values
