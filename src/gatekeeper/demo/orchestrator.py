"""`gatekeeper demo`: everything on one machine, started in order, watched, stopped in order.

The demo directory is its data directory (DESIGN.md §6): its embedded Redis (unless
GATEKEEPER_REDIS_URL is set; append-only, so a second run on the same --dir continues) is shared
by `gatekeeper serve` and `gatekeeper worker` (child processes, as in production), and its
SQLite billing file is there too unless GATEKEEPER_BILLING_DSN is set. Then the sample LLM
upstream and the alert webhook receiver (in this process), Envoy in front (HTTP ext_authz +
access-log settlement), then the traffic generator with a live view. SIGINT/SIGTERM or
--duration stop everything (exit 0); a child that dies unexpectedly is named, with the end of
its log, and the demo exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from redis.asyncio import Redis

from gatekeeper.config import ConfigError
from gatekeeper.demo.banner import DemoInfo, banner, ready_line
from gatekeeper.demo.children import Child
from gatekeeper.demo.policy import write_demo_policy
from gatekeeper.demo.ports import first_taken
from gatekeeper.demo.progress import Display, Snapshot
from gatekeeper.demo.scenario import SCENARIO
from gatekeeper.demo.traffic import TrafficGenerator
from gatekeeper.demo.upstream import LlmUpstream
from gatekeeper.demo.usage import UsagePoller
from gatekeeper.demo.webhooks import AlertReceiver
from gatekeeper.envoy_runner import EnvoyError, EnvoyProcess, packaged_bootstrap, readdress
from gatekeeper.notify.signing import generate_secret
from gatekeeper.pipeline.commands import WORKER_READY
from gatekeeper.store.datadir import DataDir, SharedRedis, open_shared_redis
from gatekeeper.store.embedded import EmbeddedRedisError

__all__ = ["Demo", "DemoFailure", "DemoOptions"]

HOST = "127.0.0.1"
TICK_S = 0.5


@dataclass(frozen=True, slots=True)
class DemoOptions:
    envoy_port: int = 10000
    http_port: int = 8080
    grpc_port: int = 9191
    authz_http_port: int = 9192
    envoy_admin_port: int = 0  # 0 = any free port
    upstream_port: int = 0
    traffic: bool = True
    duration_s: float | None = None  # None = until SIGINT/SIGTERM
    directory: Path | None = None  # data directory; None = a fresh temporary one (kept)
    start_timeout_s: float = 90.0


class DemoFailure(Exception):
    """Something the user must know about; the message says what and where to look."""


class Demo:
    def __init__(
        self, options: DemoOptions, env: Mapping[str, str], *, out: TextIO, err: TextIO
    ) -> None:
        self.options = options
        self.env = env
        self.out = out
        self.err = err
        self.stopping = asyncio.Event()
        self.directory = options.directory or Path(tempfile.mkdtemp(prefix="gatekeeper-demo-"))
        self.operator_token = secrets.token_urlsafe(18)
        self.embedded: SharedRedis | None = None
        self.redis_url = ""
        self.upstream = LlmUpstream()
        self.receiver = AlertReceiver(secret=generate_secret())
        self.children: list[Child] = []
        self.envoy: EnvoyProcess | None = None
        self.traffic: TrafficGenerator | None = None
        self.poller: UsagePoller | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.started_at = time.monotonic()

    # -- the whole run -------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            try:
                await self.start()
                return 0 if self.stopping.is_set() else await self.watch()
            except DemoFailure as exc:
                print(f"demo: {exc}", file=self.err, flush=True)
                return 1
            finally:
                await self.shutdown()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    # -- start ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every part in order; returns early (nothing more started) once stopping."""
        o = self.options
        taken = first_taken(
            [
                (o.envoy_port, "Envoy listener, --envoy-port"),
                (o.http_port, "API and dashboard, --http-port"),
                (o.grpc_port, "gatekeeper gRPC, --grpc-port"),
                (o.authz_http_port, "ext_authz HTTP, --authz-http-port"),
                (o.envoy_admin_port, "Envoy admin, --envoy-admin-port"),
                (o.upstream_port, "sample upstream, --upstream-port"),
            ]
        )
        if taken is not None:
            raise DemoFailure(
                f"port {taken[0]} ({taken[1]}) is already in use: stop what "
                "listens there or choose another port with that option"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        await self._start_redis()
        await self.upstream.start(HOST, o.upstream_port)
        await self.receiver.start(HOST, 0)
        try:
            policy = write_demo_policy(self.directory, webhook_url=self.receiver.url)
        except ConfigError as exc:  # a packaging bug: say it plainly
            raise DemoFailure(f"the demo policy is invalid:\n{exc}") from exc
        self._start_children(policy)
        serve, worker = self.children[0], self.children[1]
        ready_url = f"http://{HOST}:{o.http_port}/readyz"
        await self._wait_until(lambda: _answers_200(ready_url), serve, "ready")
        # the worker: store open, signal handlers set (a stop no longer finds it starting)
        await self._wait_until(lambda: _logged(worker, WORKER_READY), worker, "running")
        if self.stopping.is_set():
            return
        await self._start_envoy()
        self._check_children()
        info = DemoInfo(
            envoy_url=f"http://{HOST}:{o.envoy_port}",
            api_url=f"http://{HOST}:{o.http_port}",
            operator_token=self.operator_token,
            directory=self.directory,
            redis=f"embedded, data in {self.embedded.data.redis_dir}"
            if self.embedded
            else "GATEKEEPER_REDIS_URL",
            billing="GATEKEEPER_BILLING_DSN"
            if self.env.get("GATEKEEPER_BILLING_DSN")
            else str(self.directory / "billing.sqlite"),
            pids=self.pids(),
        )
        self.out.write(banner(info) + "\n" + ready_line(info.pids) + "\n\n")
        self.out.flush()

    def pids(self) -> dict[str, int]:
        found = {"redis": self.embedded.pid if self.embedded else None}
        found |= {child.name.removeprefix("gatekeeper "): child.pid for child in self.children}
        found["envoy"] = self.envoy.pid if self.envoy else None
        return {name: pid for name, pid in found.items() if pid is not None}

    async def _start_redis(self) -> None:
        url = self.env.get("GATEKEEPER_REDIS_URL")
        if url:
            self.redis_url = url
            return
        data = DataDir.at(self.directory)
        try:
            self.embedded = await asyncio.to_thread(open_shared_redis, data, create=True)
        except EmbeddedRedisError as exc:
            raise DemoFailure(f"embedded Redis: {exc}") from exc
        self.redis_url = self.embedded.url

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.env.items() if k != "GATEKEEPER_CONFIG"}
        env.update(
            GATEKEEPER_REDIS_URL=self.redis_url,  # one Redis for serve and worker
            GATEKEEPER_DATA_DIR=str(self.directory),  # and one billing file
            GATEKEEPER_ADMIN_TOKEN=self.operator_token,
            GATEKEEPER_WEBHOOK_SECRET=self.receiver.secret,
            PYTHONUNBUFFERED="1",
        )
        return env

    def _start_children(self, policy: Path) -> None:
        o, cmd = self.options, [sys.executable, "-m", "gatekeeper"]
        serve = [
            *cmd, "serve", "--config", str(policy), "--host", HOST,
            "--grpc-port", str(o.grpc_port), "--authz-http-port", str(o.authz_http_port),
            "--http-port", str(o.http_port), "--workers", "1", "--log-level", "WARNING",
        ]  # fmt: skip
        worker = [
            *cmd, "worker", "--config", str(policy),
            "--sqlite-path", str(self.directory / "billing.sqlite"),
        ]  # fmt: skip
        env = self._child_env()
        for name, argv in (("gatekeeper serve", serve), ("gatekeeper worker", worker)):
            log_path = self.directory / f"{name.split()[-1]}.log"
            self.children.append(Child(name, argv, env, log_path).start())

    async def _wait_until(self, ready: Callable[[], bool], child: Child, what: str) -> None:
        """Poll `ready` (in a thread: it may do I/O) while every child lives and the demo is
        not stopping; DemoFailure naming `child` and `what` after the start timeout."""
        deadline = time.monotonic() + self.options.start_timeout_s
        while not self.stopping.is_set():
            self._check_children()
            if await asyncio.to_thread(ready):
                return
            if time.monotonic() > deadline:
                raise DemoFailure(
                    f"{child.name} was not {what} after "
                    f"{self.options.start_timeout_s:.0f}s; see {child.log_path}"
                )
            await asyncio.sleep(0.1)

    async def _start_envoy(self) -> None:
        o = self.options
        bootstrap = readdress(
            packaged_bootstrap("front-proxy.yaml"),
            listener=o.envoy_port,
            admin=o.envoy_admin_port,
            clusters={
                "gatekeeper": o.grpc_port,
                "gatekeeper_authz_http": o.authz_http_port,
                "upstream": self.upstream.port,
            },
        )
        self.envoy = EnvoyProcess(bootstrap, workdir=self.directory / "envoy")
        try:
            await asyncio.to_thread(self.envoy.start, 30.0)
        except EnvoyError as exc:
            raise DemoFailure(f"Envoy: {exc}") from exc

    def _check_children(self) -> None:
        """Raise DemoFailure naming the first child process that has exited."""
        for child in self.children:
            code = child.poll()
            if code is not None:
                raise DemoFailure(
                    f"{child.name} exited unexpectedly (code {code}); "
                    f"the end of {child.log_path}:\n{child.log_tail()}"
                )
        if self.envoy is not None and (code := self.envoy.poll()) is not None:
            raise DemoFailure(
                f"envoy exited unexpectedly (code {code}); "
                f"the end of {self.envoy.log_path}:\n{self.envoy.log_tail()}"
            )

    # -- run -----------------------------------------------------------------------------------
    async def watch(self) -> int:
        """Traffic, live view and supervision until stopped (0) or a part fails (DemoFailure)."""
        o = self.options
        self.poller = UsagePoller(
            target=f"{HOST}:{o.grpc_port}", customers=[c.id for c in SCENARIO if c.id != "unknown"]
        )
        self.tasks.append(asyncio.create_task(self.poller.run(), name="usage-poller"))
        if o.traffic:
            self.traffic = TrafficGenerator(
                base_url=f"http://{HOST}:{o.envoy_port}", scenario=SCENARIO
            )
            self.tasks.append(asyncio.create_task(self.traffic.run(), name="traffic"))
        display = Display(self.out)
        started = time.monotonic()
        redis_probe = _RedisProbe(self.redis_url) if self.embedded else None
        try:
            while not self.stopping.is_set():
                self._check_children()
                if redis_probe is not None and not await redis_probe.alive():
                    raise DemoFailure("the embedded Redis stopped answering")
                for task in self.tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise DemoFailure(f"{task.get_name()} failed: {task.exception()!r}")
                if o.traffic:
                    display.show(self._snapshot(started))
                if o.duration_s is not None and time.monotonic() - started >= o.duration_s:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), TICK_S)
        finally:
            if redis_probe is not None:
                await redis_probe.close()
        if o.traffic:
            display.show(self._snapshot(started), final=True)
        return 0

    def _snapshot(self, started: float) -> Snapshot:
        assert self.poller is not None
        traffic = self.traffic
        return Snapshot(
            elapsed_s=time.monotonic() - started,
            duration_s=self.options.duration_s,
            stats=traffic.stats if traffic else {},
            usage=self.poller.latest,
            alerts=tuple(self.receiver.alerts),
            alerts_total=self.receiver.total,
            transport_errors=traffic.errors if traffic else 0,
        )

    # -- stop ----------------------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Stop everything that was started, in reverse order; safe after a partial start."""
        if self.traffic is not None:
            self.traffic.stop()
        if self.poller is not None:
            self.poller.stop()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=10)
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.envoy is not None:
            await asyncio.to_thread(self.envoy.stop)
        # serve drains, the worker finishes its batch: both at once, each in its own thread
        await asyncio.gather(*(asyncio.to_thread(child.stop) for child in self.children))
        await self.receiver.stop()
        await self.upstream.stop()
        if self.embedded is not None:
            await self.embedded.aclose()
        print(
            f"gatekeeper demo stopped; logs, policy, Redis and billing data are in "
            f"{self.directory}",
            file=self.out,
            flush=True,
        )


class _RedisProbe:
    """PING with a short timeout; 3 failures in a row = gone (one slow answer is not)."""

    def __init__(self, url: str) -> None:
        self._client: Redis = Redis.from_url(url, socket_timeout=1.0)
        self._failures = 0
        self._next = 0.0

    async def alive(self) -> bool:
        if time.monotonic() < self._next:
            return True
        self._next = time.monotonic() + 2.0
        try:
            await self._client.ping()
            self._failures = 0
        except Exception:  # any failure to answer counts; the cause is in redis.log
            self._failures += 1
        return self._failures < 3

    async def close(self) -> None:
        await self._client.aclose()


def _logged(child: Child, marker: str) -> bool:
    try:
        return marker in child.log_path.read_text(errors="replace")
    except OSError:
        return False


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False
