"""The dashboard's static files at `/ui/` (shipped in the package; no CDN, no build step).

The page itself holds no data and needs no token: it reads the token from its URL fragment
(`/ui/#token=...`, which browsers never send to the server) and calls the `/v1` API with it.
"""

from __future__ import annotations

import mimetypes
from importlib.resources import files
from importlib.resources.abc import Traversable

from aiohttp import web

__all__ = ["add_dashboard"]

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
    ".md": "text/plain",
}
# Everything the page loads comes from this server; nothing inline, nothing from elsewhere.
_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _find(root: Traversable, name: str) -> Traversable | None:
    """The packaged file at `name` (a relative path), or None; never leaves `root`."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or p.startswith(".") or "\\" in p for p in parts):
        return None
    node = root
    for part in parts:
        node = node / part
    return node if node.is_file() else None


def add_dashboard(app: web.Application, *, root: Traversable | None = None) -> None:
    """Serve `/ui` (redirect), `/ui/` (index.html) and `/ui/<file>` from the package."""
    ui = root or files("gatekeeper.http") / "ui"

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("/ui/")

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        found = _find(ui, name)
        if found is None:
            raise web.HTTPNotFound()
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        content_type = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "text/plain"
        return web.Response(
            body=found.read_bytes(), content_type=content_type, charset="utf-8", headers=_HEADERS
        )

    app.router.add_get("/ui", redirect)
    app.router.add_get("/ui/", serve)
    app.router.add_get("/ui/{name:.+}", serve)
