"""The data directory's embedded Redis: one durable redis-server per directory, shared.

Layout of a data directory (`settings.data_dir`, GATEKEEPER_DATA_DIR, `--data-dir`):

    <data>/billing.sqlite        the default SQLite billing file
    <data>/redis/appendonly.aof  the embedded Redis's data (append-only, fsync every second)
    <data>/redis/redis.sock      its unix socket (no TCP port)
    <data>/redis/redis.pid, redis.log
    <data>/redis/lock            flock: one opener or closer at a time
    <data>/redis/leases/<pid>.<n>  one file per open handle (holding its process's start time)

Every command that opens the directory attaches to the server already answering on the
socket, or starts one (in its own session, so it outlives the command that started it), and
leaves a lease. Closing removes the own lease and the leases of dead processes (a command
killed with -9 leaves one; a reused pid is told apart by its start time); the last one out
shuts the server down and waits for it to exit.
The socket path must fit the unix limit (104 bytes): a longer one is an error naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.store.embedded import EmbeddedRedisError, redis_server_binary

__all__ = ["DataDir", "DataDirError", "DataDirMissing", "SharedRedis", "open_shared_redis"]

log = logging.getLogger(__name__)

SOCKET_PATH_LIMIT = 104  # sun_path on macOS/BSD; Linux allows 108
_lease_numbers = itertools.count()


class DataDirError(EmbeddedRedisError):
    """The data directory's Redis cannot be used (socket path too long, server did not start)."""


class DataDirMissing(DataDirError):
    """A read-only command found no data where it expected some (the CLI exits 2)."""


@dataclass(frozen=True, slots=True)
class DataDir:
    """Paths inside one data directory (absolute; nothing is created by constructing it)."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> DataDir:
        return cls(Path(path).expanduser().absolute())

    @property
    def billing_sqlite(self) -> Path:
        return self.root / "billing.sqlite"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def socket(self) -> Path:
        return self.redis_dir / "redis.sock"

    @property
    def aof(self) -> Path:
        return self.redis_dir / "appendonly.aof"

    @property
    def pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"

    @property
    def leases(self) -> Path:
        return self.redis_dir / "leases"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def has_redis_data(self) -> bool:
        return self.aof.exists()


@dataclass(frozen=True, slots=True)
class SharedRedis:
    """One open handle on a data directory's Redis; `close()` releases it (idempotent)."""

    data: DataDir
    lease: Path
    pid: int | None  # the server's pid when it was opened
    started: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        return self.data.url

    def close(self, timeout_s: float = 10.0) -> None:
        """Release the lease; the last holder stops the server and waits for it to exit."""
        with _locked(self.data):
            with contextlib.suppress(FileNotFoundError):
                self.lease.unlink()
            last = not _live_leases(self.data)
            if last:
                _stop_server(self.data, timeout_s)
        if self.started is not None:  # reap our child once it has exited, whoever stopped it
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.started.wait(timeout=timeout_s if last else 0)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


def open_shared_redis(data: DataDir, *, create: bool, timeout_s: float = 15.0) -> SharedRedis:
    """Attach to (or start) the Redis of `data` and take a lease on it.

    `create=False` (read-only commands): raise DataDirMissing naming the file when the
    directory holds no Redis data, instead of starting an empty server.
    Raises DataDirError: the socket path is too long, or the server did not start.
    """
    if len(os.fsencode(data.socket)) >= SOCKET_PATH_LIMIT:
        raise DataDirError(
            f"data directory path too long for a unix socket ({SOCKET_PATH_LIMIT} bytes): "
            f"{data.socket}; choose a shorter --data-dir"
        )
    if not create and not data.has_redis_data():
        raise DataDirMissing(f"no embedded Redis data at {data.aof} (wrong --data-dir?)")
    data.leases.mkdir(parents=True, exist_ok=True)
    started = None
    with _locked(data):
        if _ping(data.socket) != b"+PONG":
            _prune_leases(data)
            started = _start_server(data, timeout_s)
        lease = data.leases / f"{os.getpid()}.{next(_lease_numbers)}"
        lease.write_text(_started_at(os.getpid()))
    return SharedRedis(data=data, lease=lease, pid=_server_pid(data), started=started)


@contextlib.contextmanager
def _locked(data: DataDir) -> Iterator[None]:
    data.redis_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data.redis_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _start_server(data: DataDir, timeout_s: float) -> subprocess.Popen[bytes]:
    args = [
        str(redis_server_binary()),
        "--port", "0",
        "--unixsocket", str(data.socket),
        "--unixsocketperm", "700",
        "--dir", str(data.redis_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--pidfile", str(data.pidfile),
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--loglevel", "warning",
        "--logfile", str(data.redis_dir / "redis.log"),
    ]  # fmt: skip
    # its own session: it is shared, so it must not die with the command that started it
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=data.redis_dir,
    )
    deadline = time.monotonic() + timeout_s
    while _ping(data.socket) != b"+PONG":  # -LOADING while the append-only file replays
        if proc.poll() is not None:
            raise DataDirError(
                f"embedded redis-server exited with {proc.returncode}; "
                f"see {data.redis_dir / 'redis.log'}"
            )
        if time.monotonic() > deadline:
            _signal(proc.pid, signal.SIGKILL)
            raise DataDirError(f"embedded redis-server did not start in time; see {data.redis_dir}")
        time.sleep(0.02)
    log.info("embedded redis started pid=%s data=%s", proc.pid, data.redis_dir)
    return proc


def _stop_server(data: DataDir, timeout_s: float) -> None:
    pid = _server_pid(data)
    if _ping(data.socket, b"SHUTDOWN\r\n") is None and pid is not None:
        _signal(pid, signal.SIGTERM)  # no answer on the socket: stop it by its pidfile
    deadline = time.monotonic() + timeout_s
    while pid is not None and _alive(pid):
        if time.monotonic() > deadline:
            log.error("embedded redis pid=%s did not stop in %.0fs: killed", pid, timeout_s)
            _signal(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    log.info("embedded redis stopped (data kept in %s)", data.redis_dir)


def _ping(path: Path, command: bytes = b"PING\r\n") -> bytes | None:
    """The first reply line to `command` on the socket, b"" if closed unanswered, None if no
    server listens."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(path))
            sock.sendall(command)
            return sock.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return None


def _server_pid(data: DataDir) -> int | None:
    try:
        return int(data.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _live_leases(data: DataDir) -> list[Path]:
    _prune_leases(data)
    return list(data.leases.glob("*"))


def _prune_leases(data: DataDir) -> None:
    """Remove the leases of processes that are gone (or whose pid now names another process:
    a lease holds its holder's start time)."""
    for lease in data.leases.glob("*"):
        pid = lease.name.split(".", 1)[0]
        try:
            held = lease.read_text()
        except FileNotFoundError:
            continue
        if not pid.isdigit() or not _alive(int(pid)) or held != _started_at(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                lease.unlink()


def _started_at(pid: int) -> str:
    """When `pid` started (clock ticks since boot, from /proc); "" where unknown (macOS)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of the whole line


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we know
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
