"""A webhook receiver for the demo: `gatekeeper worker` delivers the demo customers' alerts
(thresholds, spend caps) here, signed per Standard Webhooks; the demo verifies and shows them."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from gatekeeper.demo.upstream import serve_app
from gatekeeper.notify.signing import WebhookVerificationError, verify

__all__ = ["AlertReceiver", "ReceivedAlert"]


@dataclass(frozen=True, slots=True)
class ReceivedAlert:
    kind: str  # threshold, spend_cap, overage, digest, ...
    customer: str
    summary: str


def _summaries(payload: dict[str, object]) -> list[ReceivedAlert]:
    kind = str(payload.get("type", "")).removeprefix("gatekeeper.alert.")
    inner_alerts = payload.get("alerts")
    if isinstance(inner_alerts, list):  # a digest holds several alerts
        found: list[ReceivedAlert] = []
        for inner in inner_alerts:
            if isinstance(inner, dict):
                found.extend(_summaries(inner))
        return found
    customer = str(payload.get("customer", "?"))
    feature = payload.get("feature") or "spend"
    threshold = payload.get("threshold")
    detail = f"{feature} at {threshold}%" if threshold is not None else str(feature)
    return [ReceivedAlert(kind, customer, f"{kind}: {detail}")]


class AlertReceiver:
    """Serves POST /hooks: verifies the signature with `secret`, keeps the last `keep` alerts."""

    def __init__(self, *, secret: str, keep: int = 50) -> None:
        self.secret = secret
        self.alerts: deque[ReceivedAlert] = deque(maxlen=keep)
        self.total = 0
        self.rejected = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> AlertReceiver:
        app = web.Application()
        app.router.add_post("/hooks", self.receive)
        self._runner, self.port = await serve_app(app, host, port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(request.headers, body, [self.secret], now=time.time())
            payload = json.loads(body)
        except (WebhookVerificationError, ValueError):
            self.rejected += 1
            return web.Response(status=400, text="bad signature or body")
        if isinstance(payload, dict):
            for alert in _summaries(payload):
                self.total += 1
                self.alerts.append(alert)
        return web.Response(status=204)
