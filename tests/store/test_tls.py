"""The auto-pipelined fast path over TLS (rediss://): a real redis-server with a TLS port, a
certificate made for the test; the CA (and a client certificate when the server asks for one)
given as the URL's own query parameters, read exactly as redis-py reads them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.engine import DecisionRequest, MeterRequest, Outcome
from gatekeeper.errors import StoreUnavailable
from gatekeeper.settings import RedisSettings
from gatekeeper.store.connection import connect_redis
from gatekeeper.store.endpoint import Endpoint
from tests.e2e.harness import free_port
from tests.engine.harness import make_harness
from tests.engine.policies import metered, plan, policy

REDIS_SERVER = shutil.which("redis-server")
OPENSSL = shutil.which("openssl")


def _cert(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        [OPENSSL or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """A redis-server answering TLS only, asking clients for a certificate of `client`."""
    if REDIS_SERVER is None or OPENSSL is None:
        pytest.skip("needs redis-server (built with TLS) and openssl")
    d = tmp_path_factory.mktemp("tls")
    server_key, server_cert = _cert(d, "server")
    _, client_cert = _cert(d, "client")
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(server_cert), "--tls-key-file", str(server_key),
         "--tls-ca-cert-file", str(client_cert), "--tls-auth-clients", "yes",
         "--save", "", "--appendonly", "no", "--dir", str(d)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.skip("this redis-server has no TLS support")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port, server_cert, d
    finally:
        proc.terminate()
        proc.wait(10)


def _url(port: int, ca: Path, d: Path) -> str:
    return (
        f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
        f"&ssl_certfile={d / 'client.pem'}&ssl_keyfile={d / 'client.key'}"
    )


async def test_decisions_go_through_the_auto_pipeline_over_tls(
    tls_redis: tuple[int, Path, Path], key_prefix: str
) -> None:
    port, ca, d = tls_redis
    endpoint = Endpoint.from_url(_url(port, ca, d))
    assert endpoint is not None and endpoint.tls is not None
    assert endpoint.server_hostname == "127.0.0.1"  # checked against the certificate
    client = connect_redis(_url(port, ca, d), RedisSettings())
    assert client.autopipeline is not None  # TLS no longer falls back to redis-py
    try:
        h = make_harness(client, policy(plan("p", metered("requests", 30))), key_prefix)
        request = DecisionRequest("cust", meters=(MeterRequest("requests", 1),))
        outcomes = [(await h.engine.decide(request)).outcome for _ in range(32)]
        assert outcomes == [Outcome.ALLOWED] * 30 + [Outcome.QUOTA_EXHAUSTED] * 2
        assert client.autopipeline.in_flight == 0 and client.autopipeline.connects >= 1
        assert len(await h.events()) == 30  # redis-py, over TLS as well, reads what was written
    finally:
        await client.aclose()


async def test_a_server_certificate_the_ca_does_not_sign_is_refused(
    tls_redis: tuple[int, Path, Path], key_prefix: str
) -> None:
    port, _, d = tls_redis
    wrong_ca = d / "client.pem"  # not the server's issuer
    client = connect_redis(_url(port, wrong_ca, d), RedisSettings(pool_timeout_s=1))
    try:
        h = make_harness(client, policy(plan("p", metered("requests", 3))), key_prefix)
        request = DecisionRequest("cust", meters=(MeterRequest("requests", 1),))
        with pytest.raises(StoreUnavailable):
            await h.engine.decide(request)
    finally:
        await client.aclose()
