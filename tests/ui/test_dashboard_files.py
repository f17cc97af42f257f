"""`/ui` serves the packaged page: every file it references exists, nothing leaves the package."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gatekeeper.http.dashboard import add_dashboard
from tests.e2e.harness import free_port


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application()
    add_dashboard(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_page_and_assets(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/ui", allow_redirects=False) as r:
            assert r.status == 308 and r.headers["location"] == "/ui/"
        async with session.get(f"{base}/ui/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert "default-src 'self'" in r.headers["content-security-policy"]
            page = await r.text()
        assets = re.findall(r'(?:src|href)="([^"#:]+)"', page)
        assert {"app.js", "app.css", "vendor/uPlot.iife.min.js"} <= set(assets)
        types = {".js": "text/javascript", ".css": "text/css"}
        for asset in assets:
            async with session.get(f"{base}/ui/{asset}") as r:
                assert r.status == 200, asset
                assert r.content_type == types[asset[asset.rindex(".") :]]
                assert len(await r.read()) > 100
        async with session.get(f"{base}/ui/vendor/uPlot.LICENSE") as r:
            assert r.status == 200 and "MIT" in await r.text()


@pytest.mark.parametrize(
    "path", ["/ui/nope.js", "/ui/../app.py", "/ui/%2e%2e/api.py", "/ui/vendor/", "/ui/.hidden"]
)
async def test_nothing_outside_the_ui_folder(base: str, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(base + path) as r:
        assert r.status == 404


async def test_page_loads_nothing_from_elsewhere(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for name in ("index.html", "app.js", "app.css"):
            async with session.get(f"{base}/ui/{name}") as r:
                text = await r.text()
            assert not re.search(r"https?://(?!www\.w3\.org)", text), name
