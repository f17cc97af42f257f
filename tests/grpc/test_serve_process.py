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


def _serve(workers: int, ports: tuple[int, int, int], env: dict[str, str]) -> subprocess.Popen[str]:
    port, http_port, api_port = ports
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatekeeper",
            "serve",
            "--workers",
            str(workers),
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
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _env(redis_target: RedisTarget, key_prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "GATEKEEPER_REDIS_URL": redis_target.url,
        "GATEKEEPER_REDIS_KEY_PREFIX": key_prefix,
    }


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def test_a_second_serve_on_taken_ports_fails_instead_of_sharing(
    redis_target: RedisTarget, key_prefix: str
) -> None:
    """Only the processes of one `--workers N` share ports; a second `serve` on the same ports
    (another config, another Redis) must not silently take half the connections."""
    env = _env(redis_target, key_prefix)
    first_ports = (free_port(), free_port(), free_port())
    first = _serve(1, first_ports, env)
    try:
        assert f":{first_ports[0]}" in first.stdout.readline()  # type: ignore[union-attr]
        for taken in range(3):  # gRPC, ext_authz HTTP, API: each alone is refused
            ports = tuple(p if i == taken else free_port() for i, p in enumerate(first_ports))
            second = _serve(1, ports, env)  # type: ignore[arg-type]
            try:
                assert second.wait(timeout=30) == 1
                err = second.stderr.read()  # type: ignore[union-attr]
                assert "gatekeeper could not start" in err and str(ports[taken]) in err, err
            finally:
                _kill(second)
        assert first.poll() is None
    finally:
        _kill(first)


async def test_workers_share_the_port_and_stop_cleanly(
    redis_target: RedisTarget, key_prefix: str
) -> None:
    port, http_port, api_port = free_port(), free_port(), free_port()
    proc = _serve(2, (port, http_port, api_port), _env(redis_target, key_prefix))
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
        _kill(proc)
