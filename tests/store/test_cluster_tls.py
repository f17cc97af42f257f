"""A Redis Cluster over TLS (rediss:// seeds): three real redis-server primaries that speak TLS
only, on the client port and the cluster bus, formed by the test (ADDSLOTSRANGE, MEET). The
decisions' auto-pipeline and redis-py's Cluster client both reach every primary over TLS with
the first seed's CA, the nodes found in the slot map included."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from gatekeeper.engine import DecisionRequest, MeterRequest, Outcome
from gatekeeper.settings import RedisSettings
from gatekeeper.store.cluster import parse_seeds
from gatekeeper.store.connection import connect_redis
from gatekeeper.store.localcluster import free_cluster_ports
from tests.engine.harness import make_harness
from tests.engine.workers import MANY, scenario
from tests.store.test_tls import OPENSSL, REDIS_SERVER, _cert

pytestmark = pytest.mark.cluster

SLOTS = 16384


def _client(port: int, ca: Path) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca), socket_timeout=5
    )


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[int], Path]]:
    """Three TLS-only primaries, slots split in thirds; (ports, CA file)."""
    if REDIS_SERVER is None or OPENSSL is None:
        pytest.skip("needs redis-server (built with TLS) and openssl")
    d = tmp_path_factory.mktemp("tls-cluster")
    key, cert = _cert(d, "server")
    ports = free_cluster_ports(3)
    procs = []
    try:
        for port in ports:
            node = d / str(port)
            node.mkdir()
            args = [
                REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                "--tls-cluster", "yes", "--tls-replication", "yes",
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                "--cluster-config-file", str(node / "nodes.conf"),
                "--dir", str(node), "--save", "", "--appendonly", "no",
            ]  # fmt: skip
            procs.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            )
        clients = [_wait_ping(port, cert, proc) for port, proc in zip(ports, procs, strict=True)]
        third = SLOTS // 3
        for i, c in enumerate(clients):
            last = SLOTS - 1 if i == 2 else (i + 1) * third - 1
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * third, last)
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        deadline = time.monotonic() + 30
        while not all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in clients):
            assert time.monotonic() < deadline, "the TLS cluster did not form"
            time.sleep(0.1)
        for c in clients:
            c.close()
        yield ports, cert
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _wait_ping(port: int, ca: Path, proc: subprocess.Popen[bytes]) -> redis.Redis:
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            pytest.skip("this redis-server has no TLS support")
        try:
            c = _client(port, ca)
            c.ping()
            return c
        except redis.ConnectionError:
            assert time.monotonic() < deadline, f"TLS node {port} did not answer"
            time.sleep(0.05)


def _seeds(ports: list[int], ca: Path) -> str:
    """The first seed carries the CA; the second is host:port only (inherits TLS)."""
    return f"rediss://127.0.0.1:{ports[0]}?ssl_ca_certs={ca},127.0.0.1:{ports[1]}"


def test_rediss_seeds_share_the_first_seeds_tls() -> None:
    seeds = parse_seeds("rediss://127.0.0.1:7000?ssl_cert_reqs=none,10.0.0.2:7001")
    assert all(s.tls is not None for s in seeds)
    for bad in ("rediss://a:1,redis://b:2", "redis://a:1,rediss://b:2"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


async def test_decisions_and_commands_reach_every_primary_over_tls(
    tls_cluster: tuple[list[int], Path], key_prefix: str
) -> None:
    ports, ca = tls_cluster
    client = connect_redis(_seeds(ports, ca), RedisSettings(cluster=True))
    assert client.autopipeline is not None
    try:
        h = make_harness(client, scenario("many"), key_prefix)  # customers on every primary
        for customer in MANY:
            request = DecisionRequest(customer, meters=(MeterRequest("requests", 60),))
            outcomes = [(await h.engine.decide(request)).outcome for _ in range(2)]
            assert outcomes == [Outcome.ALLOWED, Outcome.QUOTA_EXHAUSTED]  # limit 100
        streams = [h.usage_stream(customer) for customer in MANY]
        assert _owners(ports[0], ca, streams) == set(ports)  # every primary decided, over TLS
        for customer in MANY:  # redis-py's Cluster client reads what was written, over TLS
            assert len(await h.events(customer)) == 1
        assert await h.store.retire_journals(every=True) >= 1
    finally:
        await client.aclose()


def _owners(port: int, ca: Path, keys: list[str]) -> set[int]:
    """The ports of the primaries serving `keys` (CLUSTER SLOTS, asked over TLS)."""
    c = _client(port, ca)
    try:
        owners = {}
        for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
            for slot in range(start, end + 1):
                owners[slot] = int(primary[1])
        return {owners[key_slot(k.encode())] for k in keys}
    finally:
        c.close()
