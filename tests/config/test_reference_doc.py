"""docs/configuration.md is the generated settings reference, current with the models."""

from __future__ import annotations

from pathlib import Path

from gatekeeper.config.reference import render_reference
from gatekeeper.config.settings_fields import SECTIONS, TOP_LEVEL, env_name

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_reference(), (
        "docs/configuration.md is stale: run "
        "`.venv/bin/python -m gatekeeper.config.reference > docs/configuration.md`"
    )


def test_every_setting_and_variable_is_documented() -> None:
    text = render_reference()
    for section, fields in SECTIONS.items():
        for name in fields:
            assert f"`settings.{section}.{name}`" in text
            assert f"`{env_name(section, name)}`" in text
    for name in TOP_LEVEL:
        assert f"`{env_name(None, name)}`" in text
