"""The shipped bootstraps are exactly what `gatekeeper envoy-config` makes from their flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.cli import main
from gatekeeper.envoyconfig.args import to_argv
from gatekeeper.envoyconfig.command import parse_options
from gatekeeper.envoyconfig.presets import COPIES, PRESETS

REPO = Path(__file__).resolve().parents[2]


def test_every_shipped_bootstrap_is_a_preset() -> None:
    shipped = {f"envoy/{p.name}" for p in (REPO / "envoy").glob("*.yaml")}
    assert shipped == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shipped_bootstrap_is_current(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    assert main(["envoy-config", *PRESETS[name], "--out", str(out)], env={}) == 0
    fix = "run scripts/gen-envoy and commit the result"
    assert (REPO / name).read_bytes() == out.read_bytes(), f"{name} is stale: {fix}"
    for copy in COPIES.get(name, ()):
        assert (REPO / copy).read_bytes() == out.read_bytes(), f"{copy} is stale: {fix}"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_header_names_the_presets_flags(name: str) -> None:
    argv = list(PRESETS[name])
    assert to_argv(parse_options(argv)) == argv  # the canonical form, as the header prints it
    text = (REPO / name).read_text()
    assert "# Generated from envoy-data-plane's typed classes" in text
    assert "#   gatekeeper envoy-config " + " ".join(argv[:2]) in text
