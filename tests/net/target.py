"""A real `gatekeeper serve` to attack (its own process, so its memory can be read), the
well-formed Envoy `Check` each attack must leave answerable, and the process's memory."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
from envoy.service.auth.v3 import external_auth_pb2 as authz
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from google.rpc import code_pb2
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import free_port

POLICY = Path(__file__).parents[1] / "e2e" / "policy.yaml"
# a customer with access to GET /v1/models (tests/e2e/policy.yaml)
CHECK_HEADERS = {"x-api-key": "gk-test-busy", ":authority": "api.example.com"}
# timeouts short enough for a test; every other limit at its default
TEST_LIMITS = {"GATEKEEPER_NET_HEADER_TIMEOUT_S": "1", "GATEKEEPER_NET_IDLE_TIMEOUT_S": "20"}


@dataclass(frozen=True)
class Serve:
    pid: int
    grpc_port: int
    http_port: int  # ext_authz HTTP/1.1 (the fast path)
    api_port: int  # /metrics

    def rss_mb(self) -> float:
        return _status_kb(self.pid, "VmRSS") / 1024

    def reset_peak(self) -> None:
        """Start a new peak-RSS measurement (VmHWM), Linux's clear_refs 5."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_mb(self) -> float:
        return _status_kb(self.pid, "VmHWM") / 1024

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def start_serve(redis_url: str, key_prefix: str) -> Iterator[Serve]:
    grpc_port, http_port, api_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        **TEST_LIMITS,
        "GATEKEEPER_REDIS_URL": redis_url,
        "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix,
    }
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
    argv = [
        sys.executable, "-m", "gatekeeper", "serve", "--workers", "1",
        "--grpc-port", str(grpc_port), "--authz-http-port", str(http_port),
        "--http-port", str(api_port), "--config", str(POLICY), "--log-level", "WARNING",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert f":{grpc_port}" in line, f"serve did not start: {line!r}"
        yield Serve(proc.pid, grpc_port, http_port, api_port)
        assert proc.poll() is None, "the server died under attack"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def check_request() -> authz.CheckRequest:
    request = authz.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", "/v1/models", "api.example.com"
    http.headers.update(CHECK_HEADERS)
    return request


async def grpc_check_allowed(port: int) -> bool:
    """A well-formed Envoy Check on a fresh connection: True when it is answered allowed."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = authz_grpc.AuthorizationStub(channel)
        response = await stub.Check(check_request(), timeout=10)
    return bool(response.status.code == code_pb2.OK)


async def refusals(serve: Serve, server: str) -> dict[str, float]:
    """gatekeeper_net_refusals_total of `server` (grpc, authz_http), by reason, from /metrics."""
    url = f"http://127.0.0.1:{serve.api_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "gatekeeper_net_refusals":
            for sample in family.samples:
                if sample.labels.get("server") == server:
                    found[sample.labels["reason"]] = sample.value
    return found


HTTP_CHECK = b"GET /v1/models HTTP/1.1\r\nhost: api.example.com\r\nx-api-key: gk-test-busy\r\n\r\n"


async def http_check_status(port: int) -> bytes:
    """A well-formed HTTP-mode check on a fresh connection: its status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HTTP_CHECK)
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def slowloris(port: int, head: bytes, connections: int = 100) -> float:
    """`connections` connections each sending `head`, then a byte of a header field every
    0.2 s, until the server closes them; seconds until the last one was closed."""
    timeout_s = float(TEST_LIMITS["GATEKEEPER_NET_HEADER_TIMEOUT_S"])
    started = time.monotonic()
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    try:
        for _, writer in conns:
            writer.write(head)

        async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
            while not reader.at_eof():
                try:
                    writer.write(b"a")
                    if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                        break
                except TimeoutError:
                    continue
                except ConnectionError:  # a reset: closed with our bytes unread (a RST)
                    break  # (suppressed, it left at_eof() False: a busy loop of failed writes)
            return time.monotonic() - started

        closed_after = await asyncio.wait_for(
            asyncio.gather(*(trickle(r, w) for r, w in conns)), timeout_s * 3 + 5
        )
    finally:
        for _, writer in conns:
            writer.close()
    return max(closed_after)
