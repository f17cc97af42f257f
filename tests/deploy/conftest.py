"""Skip the deployment tests that need Helm only when the dev install lacks it (never silently)."""

from __future__ import annotations

import pytest

from tests.deploy.tools import ToolUnavailable, helm_binary


@pytest.fixture(scope="session")
def helm_available() -> str:
    try:
        return helm_binary()
    except ToolUnavailable as exc:
        pytest.skip(f"Helm unavailable: {exc}")
