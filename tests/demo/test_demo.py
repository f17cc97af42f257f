"""`gatekeeper demo` as a user runs it: a subprocess on free ports, a request through Envoy, usage
on the API, SIGINT → exit 0 and nothing left running; a taken port and a dying child are named."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gatekeeper.demo.upstream import MODELS
from tests.e2e.harness import free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

READY = re.compile(r"gatekeeper demo is ready \(pids: (?P<pids>[^)]*)\)")
START_TIMEOUT_S = 120  # a loaded 2-core machine: two Python children import grpc and aiohttp


@dataclass
class DemoRun:
    proc: subprocess.Popen[str]
    ports: dict[str, int]
    directory: Path
    lines: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    _ready: threading.Event = field(default_factory=threading.Event)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = READY.search(line)
            if match:
                for item in match["pids"].split(", "):
                    name, pid = item.rsplit(" ", 1)
                    self.pids[name] = int(pid)
                self._ready.set()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready.wait(0.2):
            assert self.proc.poll() is None, f"demo exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"demo not ready in time:\n{self.output()}"

    def wait_exit(self, timeout_s: float = 60) -> int:
        code = self.proc.wait(timeout_s)
        self.reader.join(5)
        return code

    def output(self) -> str:
        err = self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""
        return "\n".join(self.lines) + "\n--- stderr ---\n" + (err or "")

    @property
    def envoy(self) -> str:
        return f"http://127.0.0.1:{self.ports['envoy']}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    reader: threading.Thread = field(init=False)


def _demo_env() -> dict[str, str]:
    # the demo's own embedded Redis and SQLite file: exact counts, nothing shared
    drop = ("GATEKEEPER_REDIS_URL", "GATEKEEPER_BILLING_DSN", "GATEKEEPER_CONFIG")
    return {k: v for k, v in os.environ.items() if k not in drop}


def start_demo(directory: Path, *extra: str) -> DemoRun:
    ports = {name: free_port() for name in ("envoy", "http", "grpc", "authz")}
    argv = [
        sys.executable, "-m", "gatekeeper", "demo", "--dir", str(directory),
        "--envoy-port", str(ports["envoy"]), "--http-port", str(ports["http"]),
        "--grpc-port", str(ports["grpc"]), "--authz-http-port", str(ports["authz"]), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_demo_env()
    )
    run = DemoRun(proc, ports, directory)
    run.reader = threading.Thread(target=run._read, daemon=True)
    run.reader.start()
    return run


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[DemoRun]]:
    """Runs started by a test; any still running at the end is killed with its children."""
    runs: list[DemoRun] = []
    yield runs
    stop_runs(runs)


def stop_runs(runs: list[DemoRun]) -> None:
    """SIGINT each run still going (then SIGKILL), and kill any child left behind."""
    for run in runs:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGINT)
            try:
                run.proc.wait(60)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait(10)
        for pid in run.pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose arguments contain `text` (a /proc scan)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and _alive(int(entry.name)):
            found.append(f"{entry.name}: {cmdline}")
    return found


def assert_nothing_left(run: DemoRun) -> None:
    assert set(run.pids) == {"redis", "serve", "worker", "envoy"}
    left = {name: pid for name, pid in run.pids.items() if _alive(pid)}
    assert left == {}, f"processes left behind: {left}"
    assert _processes_mentioning(str(run.directory)) == []


def _request(url: str, *, token: str, body: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def _usage(run: DemoRun, customer: str) -> dict[str, int]:
    """{feature or 'spend': used} from gatekeeper's GetUsage (the counters decisions use)."""
    import grpc

    from gatekeeper.v1 import gatekeeper_pb2 as pb
    from gatekeeper.v1 import gatekeeper_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{run.ports['grpc']}") as channel:
        stub = pb_grpc.GatekeeperStub(channel)  # type: ignore[no-untyped-call]
        answer = stub.GetUsage(pb.GetUsageRequest(customer_id=customer), timeout=10)
    return {(x.feature or "spend"): x.used for x in answer.limits if x.kind != "rate"}


def test_demo_serves_through_envoy_shows_usage_and_stops_cleanly_on_sigint(
    tmp_path: Path, demos: list[DemoRun]
) -> None:
    run = start_demo(tmp_path / "demo", "--no-traffic")
    demos.append(run)
    run.wait_ready()
    out = "\n".join(run.lines)
    assert f"http://127.0.0.1:{run.ports['http']}/ui/#token=" in out
    assert "demo-acme-key" in out and "curl" in out

    chat = {"model": MODELS[0], "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 40}
    # hobbyist: free plan, no token grant, so its token counter shows the settled quantity
    status, headers, body = _request(
        f"{run.envoy}/v1/chat/completions", token="demo-hobbyist-key", body=chat
    )
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    tokens = body["usage"]["total_tokens"]
    assert int(headers["x-usage-total-tokens"]) == tokens
    # a denial, answered by gatekeeper through Envoy
    assert _request(f"{run.envoy}/v1/models", token="demo-not-a-key")[0] == 401

    # usage on the API: the customer's own key sees its caps; the operator token too
    status, _, state = _request(f"{run.api}/v1/customers/acme/spend-cap", token="demo-acme-key")
    assert status == 200 and state["customer"] == "acme"
    assert state["effective_cap"] == {"amount": "250.00", "action": "block"}
    assert _request(f"{run.api}/v1/customers/initech/spend-cap", token="demo-acme-key")[0] == 404
    status, _, usage = _request(f"{run.api}/v1/customers/acme/usage", token="demo-acme-key")
    assert status == 200 and usage["customer"] == "acme" and usage["spend"]["cap"] == "250.00"
    assert {f["feature"] for f in usage["features"]} >= {"chat_requests", "llm_tokens"}
    # the counters: one chat request, and the reserved tokens settled to what the upstream used
    deadline = time.monotonic() + 20
    while (used := _usage(run, "hobbyist")).get("llm_tokens") != tokens:
        assert time.monotonic() < deadline, f"tokens not settled: {used} vs {tokens}"
        time.sleep(0.1)
    assert used["chat_requests"] == 1

    run.proc.send_signal(signal.SIGINT)
    assert run.wait_exit(60) == 0, run.output()
    assert "gatekeeper demo stopped" in "\n".join(run.lines)
    assert_nothing_left(run)
    # the worker wrote the admitted usage to the SQLite billing store before it stopped
    with sqlite3.connect(run.directory / "billing.sqlite") as db:
        (events,) = db.execute(
            "select count(*) from usage_events where customer = 'hobbyist'"
        ).fetchone()
    assert events >= 1


def test_traffic_run_ends_by_itself_after_duration(tmp_path: Path, demos: list[DemoRun]) -> None:
    run = start_demo(tmp_path / "demo", "--duration", "6")
    demos.append(run)
    run.wait_ready()
    assert run.wait_exit(90) == 0, run.output()
    out = "\n".join(run.lines)
    sent = [int(m) for m in re.findall(r"· ([\d,]+) requests through Envoy", out.replace(",", ""))]
    assert sent and sent[-1] > 0, out
    assert_nothing_left(run)


def test_a_child_that_dies_is_named_and_the_demo_exits_1(
    tmp_path: Path, demos: list[DemoRun]
) -> None:
    run = start_demo(tmp_path / "demo", "--no-traffic")
    demos.append(run)
    run.wait_ready()
    os.kill(run.pids["worker"], signal.SIGKILL)
    assert run.wait_exit(60) == 1
    assert "gatekeeper worker exited unexpectedly" in run.output()
    assert_nothing_left(run)


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gatekeeper", "demo", "--dir", str(tmp_path),
             "--http-port", str(port), "--envoy-port", str(free_port()),
             "--grpc-port", str(free_port()), "--authz-http-port", str(free_port())],
            capture_output=True, text=True, timeout=60, env=_demo_env(),
        )  # fmt: skip
    assert result.returncode == 1
    assert f"port {port} (API and dashboard, --http-port) is already in use" in result.stderr
