"""The embedded default data (DESIGN.md §6): with no GATEKEEPER_REDIS_URL, serve keeps its
counters and API changes across a restart, a worker on the same data directory bills what serve
admitted, and read-only commands refuse a store that is not there (exit 2, naming it)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gatekeeper.app import App
from gatekeeper.cli import main
from gatekeeper.config import load_config
from gatekeeper.store.datadir import DataDir, _alive
from tests.api.conftest import ADMIN, POLICY, key_of


@pytest.fixture
def data() -> Iterator[DataDir]:
    with tempfile.TemporaryDirectory(prefix="gkdd-") as root:  # short: unix socket limit
        yield DataDir.at(root)


def _env(data: DataDir) -> dict[str, str]:
    return {"GATEKEEPER_DATA_DIR": str(data.root), "GATEKEEPER_ADMIN_TOKEN": ADMIN}


async def _start(data: DataDir) -> App:
    app = App(load_config(POLICY, env=_env(data)), billing_sqlite_path=str(data.billing_sqlite))
    return await app.start(host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0)


async def _authz(session: aiohttp.ClientSession, app: App, key: str) -> int:
    url = f"http://127.0.0.1:{app.authz_http_port}/v1/chat/completions"
    async with session.post(url, headers={"x-api-key": key}) as response:
        return response.status


async def _stop(app: App) -> int:
    """Stop `app`; the pid of the embedded Redis it used."""
    assert app.redis is not None and app.redis.shared is not None
    pid = app.redis.shared.pid
    assert pid is not None
    await app.stop(0)
    return pid


async def test_serve_restart_keeps_counters_and_api_changes(data: DataDir) -> None:
    app = await _start(data)
    try:
        async with aiohttp.ClientSession() as session:
            answers = [await _authz(session, app, key_of("hobbyist")) for _ in range(6)]
            assert answers == [200] * 5 + [429]  # free plan: 5 chat requests a day, hard
            url = f"http://127.0.0.1:{app.http_port}/v1/customers"
            headers = {"authorization": f"Bearer {ADMIN}"}
            body = {"id": "newco", "plan": "burst"}
            async with session.post(url, json=body, headers=headers) as response:
                assert response.status == 201
    finally:
        pid = await _stop(app)
    assert not _alive(pid)  # the last one out stopped it; its data stays
    assert data.has_redis_data()

    app = await _start(data)
    try:
        assert app.redis is not None and app.redis.shared is not None
        assert app.redis.shared.pid != pid  # a new server on the same data
        async with aiohttp.ClientSession() as session:
            assert await _authz(session, app, key_of("hobbyist")) == 429  # counter kept
            url = f"http://127.0.0.1:{app.http_port}/v1/customers/newco"
            async with session.get(url, headers={"authorization": f"Bearer {ADMIN}"}) as got:
                assert got.status == 200 and (await got.json())["plan"] == "burst"
    finally:
        pid = await _stop(app)
    assert not _alive(pid)


async def test_worker_on_the_same_data_dir_bills_what_serve_admitted(data: DataDir) -> None:
    app = await _start(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
    worker = None
    try:
        async with aiohttp.ClientSession() as session:
            answers = [await _authz(session, app, key_of("busy")) for _ in range(3)]
        assert answers == [200] * 3
        worker = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper", "worker", "--config", str(POLICY),
             "--data-dir", str(data.root), "--block-ms", "100"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        billed = 0
        while billed < 3:
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            assert time.monotonic() < deadline, "the worker billed nothing"
            await asyncio.sleep(0.2)
            billed = _billed(data.billing_sqlite, "busy")
        assert billed == 3
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
            if worker.stderr is not None:
                worker.stderr.close()
        pid = await _stop(app)
    assert not _alive(pid)
    assert list(data.leases.iterdir()) == []


def _billed(path: Path, customer: str) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            row = db.execute(
                "SELECT COALESCE(SUM(quantity), 0) FROM usage_events"
                " WHERE customer = ? AND feature = 'chat_requests'",
                (customer,),
            ).fetchone()
        except sqlite3.OperationalError:  # not migrated yet
            return 0
    return int(row[0])


def test_export_of_a_wrong_path_exits_2_naming_it(
    data: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["export", "--customer", "busy", "--period", "2026-11", "--out", str(data.root)]
    wrong = "/nonexistent/x.sqlite"
    assert main([*base, "--sqlite-path", wrong], env=_env(data)) == 2
    assert wrong in capsys.readouterr().err
    assert main([*base, "--data-dir", str(data.root)], env={}) == 2
    assert str(data.billing_sqlite) in capsys.readouterr().err
    assert not data.billing_sqlite.exists() and not Path(wrong).exists()


def test_reconcile_without_redis_data_exits_2_naming_it(
    data: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["reconcile", "--period", "2026-11"]
    assert main(args, env=_env(data)) == 2
    assert str(data.billing_sqlite) in capsys.readouterr().err
    data.billing_sqlite.touch()  # a billing file, but no Redis data
    assert main(args, env=_env(data)) == 2
    assert str(data.aof) in capsys.readouterr().err
    assert not data.redis_dir.exists()  # nothing started, nothing created
