"""End-to-end pieces: a real Envoy from a generated bootstrap, an LLM-like upstream, gatekeeper.

Envoy's bootstrap is made by `gatekeeper envoy-config`'s generator from the flags of a shipped
preset (src/gatekeeper/envoyconfig/presets.py, whose outputs are envoy/*.yaml) with the test's
ports — listener and admin on free ports, clusters at the test's servers — and any option a test
changes (a longer ext_authz timeout, failure_mode_allow), so the e2e suite runs on generated
configs, in both ext_authz modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gatekeeper import envoy_runner as runner
from gatekeeper.envoyconfig import Address
from gatekeeper.envoyconfig.build import build, document
from gatekeeper.envoyconfig.command import parse_options
from gatekeeper.envoyconfig.presets import PRESETS

REPO = Path(__file__).resolve().parents[2]
ENVOY_DIR = REPO / "envoy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envoy_binary() -> str:
    return str(runner.envoy_binary())


@contextlib.contextmanager
def running_envoy(
    preset: str,
    *,
    upstream_port: int,
    grpc_port: int | None = None,
    authz_http_port: int | None = None,
    **changes: Any,
):  # type: ignore[no-untyped-def]
    """An Envoy from the generator: `preset`'s options with listener and admin on free ports,
    gatekeeper and the upstream at the given ports, and `changes` (option name → value)."""
    base = parse_options(PRESETS[preset])
    options = replace(
        base,
        listen=Address("127.0.0.1", 0),
        admin=Address("127.0.0.1", 0),
        upstream=Address("127.0.0.1", upstream_port),
        grpc_port=grpc_port or base.grpc_port,
        authz_http_port=authz_http_port or base.authz_http_port,
        **changes,
    )
    with runner.EnvoyProcess(document(build(options))) as envoy:
        yield envoy


@dataclass
class Upstream:
    """Behaves like a small LLM API: reports the tokens it used in x-usage-total-tokens."""

    port: int = 0
    hits: int = 0
    tokens_reported: list[int] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    status: int = 200
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.seen_headers.append({k.lower(): v for k, v in request.headers.items()})
        tokens = int(request.headers.get("x-test-tokens", "1234"))
        self.tokens_reported.append(tokens)
        return web.json_response(
            {"ok": True}, status=self.status, headers={"x-usage-total-tokens": str(tokens)}
        )

    async def start(self) -> Upstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def wait_for(predicate, timeout_s: float = 5.0, interval_s: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll an async or sync predicate until true (for effects that cross processes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        await asyncio.sleep(interval_s)
    return False


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


# ext_authz transports: the same tests run through both (DESIGN §6: identical answers)
MODES = {"http": "envoy/front-proxy.yaml", "grpc": "envoy/front-proxy-grpc.yaml"}


def front_proxy(
    mode: str, *, grpc_port: int, authz_http_port: int, upstream_port: int, **changes: Any
):  # type: ignore[no-untyped-def]
    """A running Envoy front proxy in `mode` (http | grpc) pointed at gatekeeper and upstream,
    generated from the shipped front proxy's options with `changes`."""
    return running_envoy(
        MODES[mode],
        upstream_port=upstream_port,
        grpc_port=grpc_port,
        authz_http_port=authz_http_port,
        **changes,
    )
