"""End-to-end pieces: a real Envoy from a shipped config, an LLM-like upstream, gatekeeper.

Envoy runs through gatekeeper.envoy_runner: the shipped config under envoy/ is re-addressed
(listener and admin on free ports, clusters at the test's servers), so the file is exactly what
the tests exercise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from gatekeeper import envoy_runner as runner

REPO = Path(__file__).resolve().parents[2]
ENVOY_DIR = REPO / "envoy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envoy_binary() -> str:
    return str(runner.envoy_binary())


@contextlib.contextmanager
def running_envoy(template: str, *, clusters: dict[str, int], mutate=None):  # type: ignore[no-untyped-def]
    """An Envoy from envoy/<template>, re-addressed: listener and admin on free ports, the named
    clusters (those the template has) pointed at the given ports."""
    config = yaml.safe_load((ENVOY_DIR / template).read_text())
    if mutate is not None:
        mutate(config)
    names = {cluster["name"] for cluster in config["static_resources"]["clusters"]}
    bootstrap = runner.readdress(
        config,
        listener=0,
        admin=0,
        clusters={name: port for name, port in clusters.items() if name in names},
    )
    with runner.EnvoyProcess(bootstrap) as envoy:
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


def ext_authz_filter(config: dict[str, Any]) -> dict[str, Any]:
    """The ext_authz filter's typed_config in a rendered front-proxy bootstrap."""
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    for f in hcm["typed_config"]["http_filters"]:
        if f["name"] == "envoy.filters.http.ext_authz":
            return f["typed_config"]  # type: ignore[no-any-return]
    raise KeyError("ext_authz filter not found")


def slow_authz_timeout(config: dict[str, Any]) -> None:
    """A 5 s ext_authz timeout, for bursts a loaded 2-core machine answers slowly."""
    f = ext_authz_filter(config)
    if "grpc_service" in f:
        f["grpc_service"]["timeout"] = "5s"
    else:
        f["http_service"]["server_uri"]["timeout"] = "5s"


# ext_authz transports: the same tests run through both (DESIGN §6: identical answers)
MODES = {"http": "front-proxy.yaml", "grpc": "front-proxy-grpc.yaml"}


def front_proxy(
    mode: str, *, grpc_port: int, authz_http_port: int, upstream_port: int, mutate=None
):  # type: ignore[no-untyped-def]
    """A running Envoy front proxy in `mode` (http | grpc) pointed at gatekeeper and upstream."""
    clusters = {
        "gatekeeper": grpc_port,
        "gatekeeper_authz_http": authz_http_port,
        "upstream": upstream_port,
    }
    return running_envoy(MODES[mode], clusters=clusters, mutate=mutate)
