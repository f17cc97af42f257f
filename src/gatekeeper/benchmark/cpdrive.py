"""What the control-plane scenario drives: a `gatekeeper serve` process (started, timed to
`/readyz`, its RSS and `/metrics` read), decisions on its ext_authz HTTP port, and changes
through its admin API.

Decisions and changes go through the lean client (`httpclient`) on the bench's event loop:
one decision at a time on one connection, the changes on their own connection at a fixed
rate, so a change that stalls serve's event loop shows up as a slow decision.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.benchmark.directory_load import ROUTE, api_key
from gatekeeper.benchmark.httpclient import HttpConnection
from gatekeeper.benchmark.inprocess import bench_env
from gatekeeper.benchmark.processes import BenchSetupError, Child, Processes, free_port

__all__ = [
    "ADMIN_TOKEN",
    "ChangeLog",
    "ServeProcess",
    "admin_latencies",
    "decide_for",
    "decide_many",
    "make_changes",
]

ADMIN_TOKEN = "bench-admin-token"
_READY_TIMEOUT_S = 180.0


@dataclass
class ServeProcess:
    child: Child
    authz_port: int
    api_port: int
    ready_s: float  # spawn to the first 200 on /readyz

    @property
    def pid(self) -> int:
        return self.child.proc.pid

    def rss_mb(self) -> float:
        """VmRSS of the serve process, in MB (10^6 bytes)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
        raise BenchSetupError("no VmRSS in /proc/<pid>/status")

    async def metrics(self) -> dict[str, float]:
        """`/metrics`, each series summed over its labels (name -> value)."""
        conn = await HttpConnection(self.api_port).open()
        try:
            reply = await conn.request("GET", "/metrics")
        finally:
            await conn.close()
        totals: dict[str, float] = {}
        for line in reply.body.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            name = series.split("{", 1)[0]
            totals[name] = totals.get(name, 0.0) + float(value)
        return totals

    def stop(self) -> None:
        self.child.stop()


async def start_serve(
    processes: Processes,
    *,
    name: str,
    policy: Path,
    redis_url: str,
    prefix: str,
    cache_size: int,
    env: dict[str, str],
) -> ServeProcess:
    """`gatekeeper serve` (1 process) on free ports; returns once `/readyz` answers 200."""
    grpc_port, authz_port, api_port = free_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "gatekeeper", "serve", "--config", str(policy),
        "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--authz-http-port", str(authz_port), "--http-port", str(api_port),
        "--workers", "1", "--log-level", "WARNING",
    ]  # fmt: skip
    child_env = {
        **env,
        **bench_env(redis_url, prefix),
        "GATEKEEPER_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEKEEPER_DIRECTORY_CACHE_SIZE": str(cache_size),
    }
    started = time.perf_counter()
    child = processes.spawn(name, argv, child_env)
    deadline = started + _READY_TIMEOUT_S
    while True:
        if not child.alive():
            raise BenchSetupError(f"gatekeeper serve ({name}) exited: {child.log_tail()}")
        if time.perf_counter() > deadline:
            raise BenchSetupError(f"gatekeeper serve ({name}) not ready; log: {child.log_path}")
        if await _ready(api_port):
            return ServeProcess(child, authz_port, api_port, time.perf_counter() - started)
        await asyncio.sleep(0.01)


async def _ready(port: int) -> bool:
    try:
        conn = await HttpConnection(port).open()
    except OSError:
        return False
    try:
        return (await conn.request("GET", "/readyz")).status == 200
    except (OSError, ConnectionError, ValueError, IndexError):
        return False
    finally:
        await conn.close()


def _decision(conn: HttpConnection, customer: str) -> bytes:
    return conn.head("POST", ROUTE, {"x-api-key": api_key(customer)})


@dataclass
class Decisions:
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0  # answers other than 200
    seconds: float = 0.0


async def decide_many(port: int, customers: Iterable[str], connections: int) -> Decisions:
    """One decision per customer in `customers`, on `connections` connections at once."""
    out = Decisions()
    ids = iter(customers)
    started = time.perf_counter()

    async def one() -> None:
        conn = await HttpConnection(port).open()
        try:
            for customer in ids:
                t0 = time.perf_counter_ns()
                reply = await conn.send(_decision(conn, customer))
                out.latencies_ns.append(time.perf_counter_ns() - t0)
                out.errors += reply.status != 200
        finally:
            await conn.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    out.seconds = time.perf_counter() - started
    return out


async def decide_for(port: int, customers: Sequence[str], seconds: float) -> Decisions:
    """Decisions one at a time on one connection for `seconds`, cycling through `customers`."""
    conn = await HttpConnection(port).open()
    out = Decisions()
    requests = itertools.cycle([_decision(conn, c) for c in customers])
    started = time.perf_counter()
    stop_at = started + seconds
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter_ns()
            reply = await conn.send(next(requests))
            out.latencies_ns.append(time.perf_counter_ns() - t0)
            out.errors += reply.status != 200
    finally:
        await conn.close()
    out.seconds = time.perf_counter() - started
    return out


@dataclass
class ChangeLog:
    """Changes made through the admin API: latency per change, failures by status."""

    latencies_ns: list[int] = field(default_factory=list)
    failed: dict[int, int] = field(default_factory=dict)
    created: list[tuple[str, str]] = field(default_factory=list)  # (customer, key id) to revoke
    made: int = 0

    def record(self, status: int, ok: int, t0: int) -> bool:
        self.latencies_ns.append(time.perf_counter_ns() - t0)
        self.made += 1
        if status != ok:
            self.failed[status] = self.failed.get(status, 0) + 1
            return False
        return True


def _admin(port: int) -> HttpConnection:
    return HttpConnection(port, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})


async def make_changes(
    api_port: int, customers: Iterator[str], *, rate: float, seconds: float, log: ChangeLog
) -> None:
    """Changes at `rate` per second for `seconds` (scheduled, not back to back): in turn a new
    API key, a patch of the customer's description, and a revocation of a key made before."""
    conn = await _admin(api_port).open()
    interval = 1.0 / rate
    started = time.perf_counter()
    try:
        for n in itertools.count():
            due = started + n * interval
            if due - started >= seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await _one_change(conn, n % 3, next(customers), log)
    finally:
        await conn.close()


async def _one_change(conn: HttpConnection, kind: int, customer: str, log: ChangeLog) -> None:
    t0 = time.perf_counter_ns()
    if kind == 1:
        reply = await conn.request(
            "PATCH", f"/v1/customers/{customer}", {"description": f"bench change {log.made}"}
        )
        log.record(reply.status, 200, t0)
    elif kind == 2 and log.created:
        owner, key_id = log.created.pop(0)
        reply = await conn.request("DELETE", f"/v1/customers/{owner}/api-keys/{key_id}")
        log.record(reply.status, 200, t0)
    else:
        reply = await conn.request("POST", f"/v1/customers/{customer}/api-keys", {})
        if log.record(reply.status, 201, t0):
            log.created.append((customer, str(reply.json()["id"])))


async def admin_latencies(
    api_port: int, *, new_ids: Sequence[str], key_owners: Sequence[str], plan: str
) -> tuple[ChangeLog, ChangeLog]:
    """Back to back on one connection: create each customer of `new_ids`, then one API key for
    each customer of `key_owners`. Returns (create-customer, create-key) logs."""
    conn = await _admin(api_port).open()
    customers, keys = ChangeLog(), ChangeLog()
    try:
        for cid in new_ids:
            t0 = time.perf_counter_ns()
            reply = await conn.request("POST", "/v1/customers", {"id": cid, "plan": plan})
            customers.record(reply.status, 201, t0)
        for cid in key_owners:
            t0 = time.perf_counter_ns()
            reply = await conn.request("POST", f"/v1/customers/{cid}/api-keys", {})
            keys.record(reply.status, 201, t0)
    finally:
        await conn.close()
    return customers, keys
