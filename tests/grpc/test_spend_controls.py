"""A customer lowers its own spend cap while two gatekeeper processes serve traffic."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from redis.asyncio import Redis

from gatekeeper.store.keys import KeySpace
from gatekeeper.v1 import gatekeeper_pb2 as pb
from gatekeeper.v1 import gatekeeper_pb2_grpc as pb_grpc
from tests.conftest import RedisTarget
from tests.e2e.harness import free_port

POLICY = Path(__file__).parents[1] / "e2e" / "policy.yaml"
ADMIN = "operator-secret-token"


@pytest.fixture
def two_processes(redis_target: RedisTarget, key_prefix: str) -> Iterator[list[tuple[int, int]]]:
    env = {
        **os.environ,
        "GATEKEEPER_REDIS_URL": redis_target.url,
        "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix,
        "GATEKEEPER_ADMIN_TOKEN": ADMIN,
    }
    procs, ports = [], []
    try:
        for _ in range(2):
            grpc_port, http_port = free_port(), free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gatekeeper",
                        "serve",
                        "--config",
                        str(POLICY),
                        "--grpc-port",
                        str(grpc_port),
                        "--http-port",
                        str(http_port),
                        "--authz-http-port",
                        str(free_port()),
                        "--log-level",
                        "WARNING",
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
            ports.append((grpc_port, http_port))
        for proc in procs:
            assert "serving gRPC" in proc.stdout.readline()  # type: ignore[union-attr]
        yield ports
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


async def _put(http_port: int, customer: str, body: object, token: str | None) -> tuple[int, dict]:  # type: ignore[type-arg]
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.put(
            f"http://127.0.0.1:{http_port}/v1/customers/{customer}/spend-cap",
            json=body,
            headers=headers,
        ) as r,
    ):
        return r.status, await r.json(content_type=None)


async def test_lowered_cap_is_enforced_on_both_processes_within_a_second(
    two_processes: list[tuple[int, int]], redis: Redis, key_prefix: str
) -> None:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{g}") for g, _ in two_processes]
    stubs = [pb_grpc.GatekeeperStub(c) for c in channels]
    request = pb.CheckRequest(
        api_key="gk-test-spender", meters=[pb.Meter(feature="chat_requests", quantity=1)]
    )
    log: list[tuple[float, int, bool]] = []
    stop = asyncio.Event()

    async def traffic(i: int) -> None:
        while not stop.is_set():
            r = await stubs[i].Check(request)
            log.append((time.monotonic(), i, r.allowed))
            await asyncio.sleep(0.005)

    runners = [asyncio.create_task(traffic(i)) for i in range(2)]
    try:
        while sum(1 for _, _, ok in log if ok) < 40:  # 40 x 0.002 = 0.08 spent
            await asyncio.sleep(0.01)
        status, body = await _put(
            two_processes[0][1], "spender", {"amount": "0.05"}, "gk-test-spender"
        )
        changed_at = time.monotonic()
        assert status == 200 and body["effective_cap"] == {"amount": "0.05", "action": "block"}
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await asyncio.gather(*runners)
        for c in channels:
            await c.close()
    for i in range(2):
        after = [(t, ok) for t, p, ok in log if p == i and t > changed_at]
        assert after, f"process {i} served nothing after the change"
        last_allowed = max((t for t, ok in after if ok), default=changed_at)
        assert last_allowed - changed_at < 1.0, (
            f"process {i} admitted {last_allowed - changed_at:.3f}s after"
        )
        assert not any(ok for t, ok in after if t > changed_at + 1.0)
    partition = KeySpace(prefix=key_prefix).partition("spender")  # the default 16 partitions
    audit = await redis.xrange(f"{key_prefix}:{{{partition}}}:audit")  # the customer's slot
    fields = {k.decode(): v.decode() for k, v in audit[-1][1].items()}
    assert (fields["target"], fields["actor"], fields["what"]) == (
        "customer:spender",
        "customer:spender:key:spender",
        "spend_cap.set",
    )


async def test_cap_validation_and_scope(two_processes: list[tuple[int, int]]) -> None:
    http = two_processes[1][1]
    status, body = await _put(http, "spender", {"amount": "2.50"}, "gk-test-spender")
    assert status == 422 and body["errors"][0]["field"] == "amount" and "2.00" in body["detail"]
    status, body = await _put(http, "spender", {"amount": 3}, "gk-test-spender")
    assert status == 422 and body["errors"][0]["field"] == "amount"
    status, body = await _put(
        http, "spender", {"amount": "1.00", "actoin": "block"}, "gk-test-spender"
    )
    assert status == 422 and body["errors"][0]["field"] == "actoin"
    status, _ = await _put(http, "busy", {"amount": "1.00"}, "gk-test-spender")  # another customer
    assert status == 404
    status, _ = await _put(http, "spender", {"amount": "1.00"}, None)
    assert status == 401
    status, body = await _put(http, "busy", {"amount": "0.50", "action": "alert"}, ADMIN)
    assert status == 200 and body["own_cap"] == {"amount": "0.50", "action": "alert"}
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{http}/healthz") as r:
            assert r.status == 200
        async with s.get(f"http://127.0.0.1:{http}/readyz") as r:
            assert r.status == 200
