"""Headless Debian Chromium through Playwright (`executable_path`): the browser fixture, a page
opener that collects script errors, and where screenshots go.

Screenshots are kept after the run under `test-output/screenshots/` at the repository root
(GATEKEEPER_TEST_OUTPUT names another root): what a reviewer opens to see what each customer saw.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian chromium is not installed at /usr/bin/chromium (.ci/run installs it)",
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if CHROMIUM.exists():
    from playwright.async_api import BrowserContext, Page, async_playwright


def screenshot_dir() -> Path:
    root = os.environ.get("GATEKEEPER_TEST_OUTPUT") or Path(__file__).parents[2] / "test-output"
    path = Path(root) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def screenshots() -> Path:
    return screenshot_dir()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1360, "height": 1000},
        )
        try:
            yield context
        finally:
            await context.close()


async def open_page(context: BrowserContext, url: str, errors: list[str]) -> Page:
    """A new page at `url`; script errors and CSP violations are appended to `errors` (refused
    requests, logged as "Failed to load resource", are part of what the tests exercise)."""
    page = await context.new_page()
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(url)
    return page
