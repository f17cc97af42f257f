"""A local CloudEvents batch receiver on 127.0.0.1 (ephemeral port) for forwarder tests.

It answers `fail_first` requests with `fail_status` (optionally with a Retry-After header),
then `final_status`; it records every body, and the events of accepted (2xx) batches by id.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Receiver:
    fail_first: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    final_status: int = 200
    hang_s: float = 0.0  # delay before answering (timeouts, stop() during a POST)
    requests: int = 0
    bodies: list[bytes] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: Counter[str] = field(default_factory=Counter)  # accepted deliveries per id
    url: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        n = self.requests
        body = await request.read()
        self.bodies.append(body)
        self.content_types.append(request.headers.get("Content-Type", ""))
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        if n <= self.fail_first:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return web.Response(status=self.fail_status, text="try later", headers=headers)
        if self.final_status >= 300:
            return web.Response(status=self.final_status, text="bad event: missing meter")
        for event in json.loads(body):
            self.accepted.setdefault(event["id"], event)
            self.deliveries[event["id"]] += 1
        self.changed.set()
        return web.json_response({"accepted": True})

    async def wait_for(self, ids: set[str]) -> None:
        while not ids <= set(self.accepted):
            self.changed.clear()
            await self.changed.wait()


@asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/events", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}/events"
    try:
        yield receiver
    finally:
        await runner.cleanup()
