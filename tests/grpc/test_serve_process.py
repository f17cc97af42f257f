"""`gatekeeper serve --workers 2`: two processes on one port (SO_REUSEPORT), clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from gatekeeper.v1 import gatekeeper_pb2 as pb
from gatekeeper.v1 import gatekeeper_pb2_grpc as pb_grpc
from tests.conftest import RedisTarget
from tests.e2e.harness import free_port

POLICY = Path(__file__).parents[1] / "e2e" / "policy.yaml"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


async def test_workers_share_the_port_and_stop_cleanly(
    redis_target: RedisTarget, key_prefix: str
) -> None:
    port, http_port, api_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "GATEKEEPER_REDIS_URL": redis_target.url,
        "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatekeeper",
            "serve",
            "--workers",
            "2",
            "--grpc-port",
            str(port),
            "--authz-http-port",
            str(http_port),
            "--http-port",
            str(api_port),
            "--config",
            str(POLICY),
            "--log-level",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        ready = [proc.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]
        assert all(f":{port}" in line for line in ready), ready
        workers = _children(proc.pid)
        assert len(workers) == 2
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GatekeeperStub(channel)
            for _ in range(10):
                r = await stub.Check(
                    pb.CheckRequest(
                        customer_id="busy", meters=[pb.Meter(feature="chat_requests", quantity=1)]
                    )
                )
                assert r.allowed
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        time.sleep(0.1)
        for pid in workers:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
