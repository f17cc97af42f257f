"""The dashboard: static files at `/ui/` (shipped in the package; no CDN, no build step), and
`mount_dashboard`, which wires the page's live data (statistics, SSE streams) into a process.

The page itself holds no data and needs no token: it reads the token from its URL fragment
(`/ui/#token=...`, which browsers never send to the server) and calls the `/v1` API with it.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from gatekeeper.billing.types import LoggedAlert
from gatekeeper.clock import Clock
from gatekeeper.events import AlertEvent
from gatekeeper.http.sse import EventStreams, StreamWatch, UsageSource
from gatekeeper.http.views import alert_view
from gatekeeper.pipeline.worker import BILLING_GROUP
from gatekeeper.stats import DecisionStats, StatsFlusher, StatsReader
from gatekeeper.store.keys import KeySpace

__all__ = ["LiveDashboard", "add_dashboard", "alert_json", "mount_dashboard"]

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


@dataclass(frozen=True, slots=True)
class LiveDashboard:
    """The live parts of one process's dashboard (its loops run under the caller's supervisor)."""

    flusher: StatsFlusher
    reader: StatsReader
    watch: StreamWatch
    streams: EventStreams

    def stop(self) -> None:
        self.flusher.stop()
        self.watch.stop()


def alert_json(event: AlertEvent) -> dict[str, Any]:
    """A stream alert as `GET /v1/customers/{id}/alerts` shows a logged one (not delivered)."""
    return alert_view(
        LoggedAlert(
            id=event.id,
            kind=event.kind.value,
            customer=event.customer,
            feature=event.feature,
            threshold=event.threshold,
            used=event.used,
            limit=event.limit,
            period_start=event.period_start,
            period_end=event.period_end,
            occurred_at=event.time,
            decision_id=event.decision_id,
            delivered_at=None,
            cause=event.cause or None,
            at=event.at,
        )
    )


def mount_dashboard(
    app: web.Application,
    *,
    stats: DecisionStats,
    redis: Redis,
    keys: KeySpace,
    clock: Clock,
    usage: UsageSource,
    supervise: Callable[[str, Coroutine[Any, Any, None]], None],
) -> LiveDashboard:
    """Serve `/ui`, the SSE streams, flush `stats` every second and watch the usage streams.

    `usage(customer_id)` is the customer's usage JSON (as `GET /v1/customers/{id}/usage`),
    None for an unknown customer.
    """
    reader = StatsReader(redis=redis, keys=keys, clock=clock, group=BILLING_GROUP)
    watch = StreamWatch(redis=redis, keys=keys)

    async def snapshot() -> dict[str, object]:
        return (await reader.snapshot()).to_json(alert_json)

    async def recent_alerts(customer: str) -> list[dict[str, object]]:
        return [alert_json(a) for a in await reader.customer_alerts(customer)]

    streams = EventStreams(
        stats=snapshot,
        usage=usage,
        recent_alerts=recent_alerts,
        alert_json=alert_json,
        watch=watch,
    )
    streams.install(app)
    add_dashboard(app)
    flusher = StatsFlusher(stats=stats, redis=redis, keys=keys, clock=clock)
    supervise("dashboard-stats-flush", flusher.run())
    supervise("dashboard-stream-watch", watch.run())
    return LiveDashboard(flusher, reader, watch, streams)
