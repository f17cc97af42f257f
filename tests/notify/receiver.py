"""A local Standard Webhooks receiver on 127.0.0.1 for notifier tests.

Every request is recorded (headers, body, arrival time). A request is accepted (2xx) only if
the `standardwebhooks` reference verifier accepts it with one of `secrets`; accepted deliveries
are deduplicated by `webhook-id` (as a real receiver would) and counted per id, so a test can
assert that nothing arrived twice. `statuses` scripts the answers of the next requests
(e.g. [500, 500]); `stop()` / `start()` make the port refuse connections and come back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Arrival:
    headers: dict[str, str]
    body: bytes
    at_perf: float  # time.perf_counter()
    at_wall: float  # time.time()
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    secrets: list[str]
    statuses: list[int] = field(default_factory=list)  # answers for the next requests
    retry_after: str | None = None
    requests: list[Arrival] = field(default_factory=list)
    accepted: dict[str, Arrival] = field(default_factory=dict)  # first accepted per id
    arrivals: Counter[str] = field(default_factory=Counter)  # accepted deliveries per id
    rejected: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        now_perf, now_wall = time.perf_counter(), time.time()
        status = self.statuses.pop(0) if self.statuses else 204
        if status < 300 and not self._verified(body, headers):
            status = 400
        arrival = Arrival(headers, body, now_perf, now_wall, status)
        self.requests.append(arrival)
        if status < 300:
            self.arrivals[arrival.webhook_id] += 1
            self.accepted.setdefault(arrival.webhook_id, arrival)
        self.changed.set()
        if status >= 300:
            extra = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.Response(status=status, text="nope", headers=extra)
        return web.Response(status=status)

    def _verified(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        self.rejected.append(headers.get("webhook-id", ""))
        return False

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int) -> None:
        """Until `count` distinct webhook ids were accepted."""
        while len(self.accepted) < count:
            self.changed.clear()
            await self.changed.wait()
