"""Child processes of the demo (`gatekeeper serve`, `gatekeeper worker`): each in its own process
group (so the terminal's Ctrl-C reaches only the demo, which stops them in order), output to a
log file in the demo directory."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.envoy_runner import stop_process_group

__all__ = ["Child"]


@dataclass
class Child:
    name: str  # as shown to the user, e.g. "gatekeeper serve"
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> Child:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                list(self.argv),
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def poll(self) -> int | None:
        """The exit code once it has exited; None while it runs (or before start)."""
        return self._proc.poll() if self._proc is not None else None

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM its process group, wait, SIGKILL; returns the exit code. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        stop_process_group(proc, grace_s)
        return proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""
