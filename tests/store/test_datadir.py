"""The data directory's embedded Redis: durable, shared by every opener, stopped by the last one
out, leases of killed processes pruned, nothing created where data was expected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
from redis import Redis

from gatekeeper.store.datadir import (
    DataDir,
    DataDirError,
    DataDirMissing,
    _alive,
    open_shared_redis,
)


@pytest.fixture
def data() -> Iterator[DataDir]:
    # a short path: pytest's tmp_path can exceed the unix socket limit
    with tempfile.TemporaryDirectory(prefix="gkdd-") as root:
        yield DataDir.at(root)


def _get(url: str, key: str) -> bytes | None:
    with Redis.from_url(url) as client:
        value: bytes | None = client.get(key)
        return value


def _set(url: str, key: str, value: str) -> None:
    with Redis.from_url(url) as client:
        client.set(key, value)


def test_two_openers_share_one_server_the_last_one_out_stops_it(data: DataDir) -> None:
    first = open_shared_redis(data, create=True)
    second = open_shared_redis(data, create=True)
    assert first.pid is not None and second.pid == first.pid  # attached, not started again
    _set(first.url, "gkt-dd:k", "v")
    assert _get(second.url, "gkt-dd:k") == b"v"
    first.close()
    assert _alive(first.pid) and _get(second.url, "gkt-dd:k") == b"v"
    second.close()
    assert not _alive(first.pid)  # no process left behind
    assert list(data.leases.iterdir()) == [] and not data.pidfile.exists()
    assert data.has_redis_data()


def test_data_survives_a_restart(data: DataDir) -> None:
    shared = open_shared_redis(data, create=True)
    _set(shared.url, "gkt-dd:counter", "41")
    shared.close()
    again = open_shared_redis(data, create=False)  # there is data now: read-only may open it
    try:
        assert again.pid != shared.pid
        assert _get(again.url, "gkt-dd:counter") == b"41"
    finally:
        again.close()


def test_lease_of_a_killed_process_is_pruned(data: DataDir) -> None:
    code = (
        "import sys, time\n"
        "from gatekeeper.store.datadir import DataDir, open_shared_redis\n"
        "open_shared_redis(DataDir.at(sys.argv[1]), create=True)\n"
        "print('open', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(data.root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert [p.name.split(".")[0] for p in data.leases.iterdir()] == [str(holder.pid)]
    mine = open_shared_redis(data, create=True)  # the server outlived the killed command
    assert mine.pid is not None and _alive(mine.pid)
    mine.close()  # the dead lease does not keep it running
    assert not _alive(mine.pid)
    assert list(data.leases.iterdir()) == []


def test_read_only_open_of_an_empty_directory_is_refused(data: DataDir) -> None:
    with pytest.raises(DataDirMissing, match=str(data.aof)):
        open_shared_redis(data, create=False)
    assert not data.redis_dir.exists()  # nothing created


def test_a_socket_path_over_the_unix_limit_is_named(data: DataDir) -> None:
    deep = DataDir.at(data.root / ("d" * 100))
    with pytest.raises(DataDirError, match="too long") as err:
        open_shared_redis(deep, create=True)
    assert str(deep.socket) in str(err.value)


def test_a_lease_whose_pid_was_reused_is_pruned(data: DataDir) -> None:
    data.leases.mkdir(parents=True)
    # a live pid (ours), but not the process that took the lease: its start time differs
    (data.leases / f"{os.getpid()}.999999").write_text("1")
    shared = open_shared_redis(data, create=True)
    assert shared.pid is not None
    shared.close()
    assert not _alive(shared.pid)
    assert list(data.leases.iterdir()) == []
