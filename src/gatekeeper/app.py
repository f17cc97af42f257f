"""Composition root of `gatekeeper serve`: builds every part from the config and supervises it.

Background tasks (policy invalidation listener, fail-open backlog, rate limit config watcher)
are supervised: one that dies is logged with its exception and turns the process not-ready;
nothing fails silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from gatekeeper.admin import AdminService
from gatekeeper.app_metrics import ServeMetrics
from gatekeeper.backoff import Backoff
from gatekeeper.billing import BillingStore, BillingStoreError, open_store
from gatekeeper.clock import Clock, SystemClock
from gatekeeper.config import ConfigError, LoadedConfig, load_config
from gatekeeper.config.loader import collector_paused
from gatekeeper.config.yamlsrc import YMap
from gatekeeper.controls import SpendControls
from gatekeeper.directory.catalog import catalog_root
from gatekeeper.directory.key_usage import KeyUsage
from gatekeeper.directory.listener import listen_invalidations
from gatekeeper.directory.live import LiveDirectory
from gatekeeper.directory.seed import reconcile_directory
from gatekeeper.edge import Authorizer, OfflineBacklog
from gatekeeper.engine import DecisionEngine
from gatekeeper.errors import StoreUnavailable
from gatekeeper.grpc.als import AccessLogServicer
from gatekeeper.grpc.api import GatekeeperServicer
from gatekeeper.grpc.authz import AuthorizationServicer, TracedAuthorizationServicer
from gatekeeper.grpc.ratelimit_servicer import add_to_server as add_ratelimit
from gatekeeper.grpc.server import GrpcServer
from gatekeeper.http.api import build_api
from gatekeeper.http.auth import Authenticator
from gatekeeper.http.authz_server import AuthzHttpServer
from gatekeeper.http.dashboard import LiveDashboard, mount_dashboard
from gatekeeper.http.handlers import Handlers
from gatekeeper.loop import Periodic, transient_types
from gatekeeper.model import frozen_map
from gatekeeper.net.aiohttp_site import GuardedSite, aiohttp_handler_args
from gatekeeper.net.guards import NetStats
from gatekeeper.notify.state import AlertMutes
from gatekeeper.ratelimit import ConfigWatcher, RateLimitService
from gatekeeper.ratelimit.assemble import open_ratelimit
from gatekeeper.settings import FailureMode
from gatekeeper.stats import DecisionStats, DenialsReader
from gatekeeper.stats.blocked import BlockedReader
from gatekeeper.store import KeySpace, RedisDecisionStore, RedisHandle
from gatekeeper.store.connection import autopipeline_of, open_configured_redis
from gatekeeper.store.customers import CustomerRecords
from gatekeeper.store.directory import INVALIDATE_DIRECTORY, DirectoryStore
from gatekeeper.store.feed import UsageFeed
from gatekeeper.tracing import Tracing
from gatekeeper.tracing.edge import TracedAuthorizer

__all__ = ["App", "Supervisor"]

RLS_SERVICE = "envoy.service.ratelimit.v3.RateLimitService"

log = logging.getLogger(__name__)


@dataclass
class Supervisor:
    """Runs background coroutines; any that ends unexpectedly marks the process unhealthy."""

    on_failure: Callable[[str, BaseException | None], None]
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    stopping: bool = False

    def start(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(functools.partial(self._done, name))
        self.tasks[name] = task

    def _done(self, name: str, task: asyncio.Task[None]) -> None:
        if self.stopping or task.cancelled():
            return
        exc = task.exception()
        log.error("background task %s ended: %r", name, exc, exc_info=exc)
        self.on_failure(name, exc)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Cancel every task and wait up to `grace_s` for them; one still running (stuck in a
        cleanup that ignores the cancellation) is logged and cancelled once more, never awaited
        forever (a stop that hangs would keep the process alive)."""
        self.stopping = True
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, stuck = await asyncio.wait(tasks, timeout=grace_s)
        for task in stuck:
            log.error("background task %s did not stop within %.1fs", task.get_name(), grace_s)
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    task.result()


class App:
    """Everything `gatekeeper serve` runs in one process."""

    def __init__(
        self,
        config: LoadedConfig,
        *,
        clock: Clock | None = None,
        billing_sqlite_path: str | None = None,
        share_ports: bool = False,
        tracing: Tracing | None = None,
    ) -> None:
        """`billing_sqlite_path`: the SQLite billing store the API reads when no
        GATEKEEPER_BILLING_DSN is set (None: no billing store, those endpoints answer 404).
        `share_ports`: this process is one of `serve --workers N`, which listen on the same
        ports (SO_REUSEPORT); otherwise a port already taken fails the start.
        `tracing`: decisions become spans (None, the default: tracing off, and the decision
        path is built without any of it). The caller shuts it down after stop()."""
        self.config = config
        self.tracing = tracing
        self.share_ports = share_ports
        self.billing_sqlite_path = billing_sqlite_path
        self.clock = clock or SystemClock()
        self._directory: LiveDirectory | None = None
        self.key_usage: KeyUsage | None = None
        self.redis: RedisHandle | None = None
        self.grpc: GrpcServer | None = None
        self.authz_http: AuthzHttpServer | None = None
        self.http_runner: web.AppRunner | None = None
        self.api_site: GuardedSite | None = None
        self.stats = DecisionStats()  # this process's decisions, for the dashboard
        self.metrics = ServeMetrics()  # this process's /metrics
        self.dashboard: LiveDashboard | None = None
        self.http_port = 0
        self.controls: SpendControls | None = None
        self.admin: AdminService | None = None
        self.billing: BillingStore | None = None
        self._billing_lock = asyncio.Lock()
        self.handlers: Handlers | None = None
        self.healthy = False
        self.failures: list[str] = []
        self.supervisor = Supervisor(on_failure=self._failed)
        self.engine: DecisionEngine | None = None
        self.authorizer: Authorizer | None = None
        self.backlog: OfflineBacklog | None = None
        self.als: AccessLogServicer | None = None
        self.ratelimit: RateLimitService | None = None
        self.ratelimit_watcher: ConfigWatcher | None = None
        self.store: RedisDecisionStore | None = None
        self._journal_loop: Periodic | None = None

    def _failed(self, name: str, exc: BaseException | None) -> None:
        self.failures.append(f"{name}: {exc!r}")
        self.metrics.task_failures.labels(name).inc()
        self.healthy = False
        if self.grpc is not None:
            asyncio.get_running_loop().create_task(self.grpc.set_serving(False))

    @property
    def grpc_port(self) -> int:
        assert self.grpc is not None
        return self.grpc.port

    @property
    def authz_http_port(self) -> int:
        assert self.authz_http is not None
        return self.authz_http.port

    async def start(
        self,
        *,
        host: str | None = None,
        grpc_port: int | None = None,
        authz_http_port: int | None = None,
        http_port: int | None = None,
    ) -> App:
        """Start every server; ports default to the settings (0 = any free port)."""
        settings = self.config.settings
        self.redis = await open_configured_redis(settings)
        tracing = self.tracing
        store = RedisDecisionStore(redis=self.redis.client, settings=settings.redis, tracer=tracing)
        self.store = store
        await self._open_directory(store.keys)
        self.engine = DecisionEngine(policy=self.policy, store=store, clock=self.clock)
        self._journal_loop = self._journal_keeper(store, self.engine)
        self.supervisor.start("decision-journal", self._journal_loop.run())
        if settings.failure_mode is FailureMode.OPEN:
            self.backlog = OfflineBacklog(self.engine)
            self.supervisor.start("offline-backlog", self.backlog.run())
        self.authorizer = Authorizer(
            policy=self.policy,
            engine=self.engine,
            settings=settings,
            clock=self.clock,
            backlog=self.backlog,
            stats=self.stats,
            observe=self.metrics.decision_seconds.labels().observe,
            key_used=None if self.key_usage is None else self.key_usage.touch,
        )
        self.als = AccessLogServicer(self.engine, charge_5xx=settings.edge.charge_5xx)
        authz = (
            AuthorizationServicer(self.authorizer, settings.edge)
            if tracing is None
            else TracedAuthorizationServicer(
                self.authorizer,
                settings.edge,
                TracedAuthorizer(self.authorizer, tracing, name="ext_authz grpc"),
            )
        )
        self.grpc = GrpcServer(
            authz=authz,
            als=self.als,
            api=GatekeeperServicer(
                engine=self.engine,
                policy=self.policy,
                feed=UsageFeed(redis=self.redis.client, keys=store.keys),
                clock=self.clock,
                tracing=tracing,
            ),
            extra=self._extra_services(),
            reuse_port=self.share_ports,
            transport=settings.server.grpc_transport,
            limits=settings.net,
        )
        bind = host or settings.server.host
        await self.grpc.start(bind, settings.server.grpc_port if grpc_port is None else grpc_port)
        self.authz_http = AuthzHttpServer(
            self.authorizer.check
            if tracing is None
            else TracedAuthorizer(self.authorizer, tracing, name="ext_authz http").check,
            limits=settings.net,
        )
        await self.authz_http.start(
            bind,
            settings.server.authz_http_port if authz_http_port is None else authz_http_port,
            reuse_port=self.share_ports,
        )
        client = self.redis.client
        grpc_server, authz_http = self.grpc, self.authz_http

        api_failures: dict[str, int] = {}  # route -> API requests whose handler raised
        api_net = NetStats()  # what the API port refused

        def handler_failures() -> dict[tuple[str, str], int]:
            found = {("grpc", method): n for method, n in grpc_server.handler_failures.items()}
            found["authz_http", "check"] = authz_http.handler_failures
            found.update({("api", route): n for route, n in api_failures.items()})
            return found

        self.metrics.expose(
            ready=lambda: self.healthy,
            authorizer=self.authorizer,
            engine=self.engine,
            als=self.als,
            backlog=self.backlog,
            autopipeline=autopipeline_of(client),
            ratelimit=self.ratelimit,
            ratelimit_watcher=self.ratelimit_watcher,
            handler_failures=handler_failures,
            directory=self.policy.stats,
            unreplicated=(lambda: store.unreplicated) if settings.redis.wait_replicas else None,
            journal=store.journal,
            net={
                "grpc": (grpc_server.net_stats, lambda: grpc_server.connections),
                "authz_http": (authz_http.net_stats, lambda: authz_http.connections),
                "api": (api_net, lambda: len(self.api_site.connections) if self.api_site else 0),
            },
        )
        assert self.admin is not None and self.controls is not None
        self.handlers = Handlers(
            admin=self.admin,
            policy=self.policy,
            controls=self.controls,
            engine=self.engine,
            billing=self.billing_store,
            clock=self.clock,
            key_usage=self.key_usage,
            mutes=AlertMutes(redis=client, keys=store.keys),
            denials=DenialsReader(redis=client, keys=store.keys),
            blocked=BlockedReader(redis=client, keys=store.keys),
        )
        admin = self.admin
        http_app = build_api(
            handlers=self.handlers,
            authenticator=Authenticator(
                bootstrap=settings.admin.token,
                token=admin.token,
                key_owner=self.policy.key_owner,
                clock=self.clock,
            ),
            ready=lambda: self.healthy,
            metrics=self.metrics.registry.render,
            failures=api_failures,
        )
        self.dashboard = mount_dashboard(
            http_app,
            stats=self.stats,
            redis=self.redis.client,
            keys=store.keys,
            clock=self.clock,
            usage=self.handlers.usage_json,
            supervise=self.supervisor.start,
        )
        self.http_runner = web.AppRunner(
            http_app, access_log=None, **aiohttp_handler_args(settings.net)
        )
        await self.http_runner.setup()
        self.api_site = GuardedSite(
            self.http_runner,
            bind,
            settings.server.http_port if http_port is None else http_port,
            limits=settings.net,
            stats=api_net,
            reuse_port=self.share_ports,
        )
        await self.api_site.start()
        self.http_port = int(self.api_site.port or 0)
        self.supervisor.start("policy-invalidation", self._listen_invalidations(store.keys))
        assert self.key_usage is not None
        self.supervisor.start("key-last-used", self.key_usage.run())
        if self.ratelimit_watcher is not None:
            self.supervisor.start("ratelimit-config", self.ratelimit_watcher.run())
        for name in self.supervisor.tasks:  # a failures series (0) for every supervised task
            self.metrics.task_failures.labels(name)
        self.healthy = True
        log.info(
            "gatekeeper serving gRPC on %s:%d, ext_authz HTTP on %s:%d",
            bind,
            self.grpc.port,
            bind,
            self.authz_http.port,
        )
        return self

    @property
    def policy(self) -> LiveDirectory:
        """The policy source of this process (the catalog, customers from the directory)."""
        assert self._directory is not None, "App.start() first"
        return self._directory

    async def _open_directory(self, keys: KeySpace) -> None:
        """The catalog from the file (with the API's plans), the file's customers reconciled
        into the directory, and nothing of them kept in this process but what it is asked for.
        """
        assert self.redis is not None
        config = self.config
        records = CustomerRecords(redis=self.redis.client, keys=keys)
        catalog = dataclasses.replace(config.policy, customers=frozen_map())
        self._directory = LiveDirectory(
            catalog=catalog, records=records, capacity=config.settings.directory.cache_size
        )
        root = None if config.root is None else catalog_root(config.root)
        # not serving yet: no collector passes over the parsed file while its customers are
        # seeded (each pass walks every node of it: ~1/5 of the start with 100,000 customers)
        with collector_paused():
            await self._seed(config.root, records, keys)
        self.config = dataclasses.replace(config, policy=catalog, root=root)
        self.admin = AdminService(
            directory=self._directory,
            store=DirectoryStore(redis=self.redis.client, keys=keys),
            root=root,
            clock=self.clock,
            allow_private_webhooks=config.settings.alerts.allow_private_customer_webhooks,
        )
        await self.admin.refresh()
        self.controls = SpendControls(admin=self.admin)
        self.key_usage = KeyUsage(redis=self.redis.client, keys=keys, clock=self.clock)

    async def _seed(self, root: YMap | None, records: CustomerRecords, keys: KeySpace) -> None:
        assert self.redis is not None
        await reconcile_directory(
            redis=self.redis.client,
            keys=keys,
            records=records,
            root=root,
            updated_at=self.clock.now().isoformat(),
        )

    async def billing_store(self) -> BillingStore | None:
        """The billing store the API reads (events, invoices, revenue, alerts), opened on first
        use; None when none is configured. Raises BillingStoreError (the API answers 503 and
        the next call tries again)."""
        async with self._billing_lock:
            if self.billing is None:
                dsn = self.config.settings.billing.dsn
                if dsn is None and self.billing_sqlite_path is None:
                    return None
                try:
                    path = self.billing_sqlite_path or ""
                    if dsn is None:  # serve makes its data directory on first use
                        Path(path).parent.mkdir(parents=True, exist_ok=True)
                    self.billing = await open_store(dsn, default_sqlite_path=path)
                except (ValueError, OSError) as exc:
                    log.error("billing store unavailable to the API: %s", exc)
                    raise BillingStoreError(str(exc), transient=False) from exc
            return self.billing

    def _extra_services(self) -> list[tuple[str, Callable[[Any], object]]]:
        """The envoyproxy/ratelimit-compatible RLS, when GATEKEEPER_RATELIMIT_CONFIG names a config,
        and the watcher that reloads its config (started with the other background tasks).

        Raises ConfigError (every issue, with file and line) for a bad rate limit config.
        """
        settings = self.config.settings
        if not settings.ratelimit_config:
            return []
        assert self.redis is not None
        redis_settings = settings.redis
        service, self.ratelimit_watcher = open_ratelimit(
            settings.ratelimit_config,
            redis=self.redis.client,
            keys=KeySpace(prefix=redis_settings.key_prefix, partitions=redis_settings.partitions),
            clock=self.clock,
            max_series=settings.ratelimit_metric_series,
            tracer=self.tracing,
            cluster=redis_settings.cluster,
        )
        self.ratelimit = service
        tracing = self.tracing
        return [(RLS_SERVICE, lambda server: add_ratelimit(server, service, tracing))]

    @staticmethod
    def _journal_keeper(store: RedisDecisionStore, engine: DecisionEngine) -> Periodic:
        """Voids the decisions whose reply was lost as soon as Redis answers again, and
        deletes the decision journals no lost reply can still need (store/journal.py)."""

        async def step() -> None:
            if store.journal.pending:
                await engine.void_lost()
            await store.retire_journals()

        return Periodic(
            "decision journal",
            step,
            every_s=0.25,
            transient=transient_types(StoreUnavailable),
            backoff=Backoff(0.05, 2.0),
        )

    async def _close_journal(self) -> None:
        """At a stop, once no decision is in flight: void what is lost, delete the journals
        (bounded: a Redis that does not answer leaves them to their expiry, and the lost
        decisions billed, logged)."""
        if self.store is None or self.engine is None:
            return
        store, engine = self.store, self.engine
        try:
            async with asyncio.timeout(3.0):
                await engine.void_lost()
                await store.retire_journals(every=True)
        except (StoreUnavailable, TimeoutError) as exc:
            log.error(
                "decision journal not closed (%r): %d lost decisions left unvoided",
                exc,
                store.journal.pending,
            )

    async def _listen_invalidations(self, keys: KeySpace) -> None:
        """Apply what other processes announce on the invalidation channel: `customer:<id>`
        drops that customer from this process's cache, `directory` reloads the plans, tokens
        and webhooks, anything else (and a reconnection) re-reads the policy file and the rate
        limit configs too."""
        assert self.redis is not None and self.admin is not None
        admin = self.admin

        async def other(data: bytes) -> None:
            if data != INVALIDATE_DIRECTORY.encode():
                await self.reload()
                self._reload_ratelimit()
            await admin.refresh()

        await listen_invalidations(
            redis=self.redis.client,
            channel=keys.invalidate_channel(),
            directory=self.policy,
            on_other=other,
        )

    def _reload_ratelimit(self) -> None:
        """Have the rate limit config watcher re-read its files now (off the event loop)."""
        if self.ratelimit_watcher is not None:
            self.ratelimit_watcher.request_reload()

    async def reload(self) -> bool:
        """Re-read the policy file: its catalog in force, its customers reconciled into the
        directory. A bad file keeps everything in force (and says why). Raises redis errors."""
        source = self.config.source
        if source.startswith("<") or self.admin is None or self.redis is None:
            return False
        try:
            fresh = await asyncio.to_thread(load_config, source, env={})
        except ConfigError as exc:
            log.error("policy reload rejected, keeping the current policy:\n%s", exc)
            return False
        await self._seed(fresh.root, self.policy.records, self.policy.records.keys)
        root = None if fresh.root is None else catalog_root(fresh.root)
        catalog = dataclasses.replace(fresh.policy, customers=frozen_map())
        self.config = dataclasses.replace(self.config, policy=catalog, root=root)
        self.admin.set_root(root)
        self.policy.clear()
        log.info("policy reloaded from %s", source)
        return True

    async def stop(self, grace_s: float = 5.0) -> None:
        """Not-ready first, then drain in-flight calls, then close."""
        self.healthy = False
        if self.grpc is not None:
            await self.grpc.set_serving(False)
        if self.authz_http is not None:
            await self.authz_http.stop(grace_s)
        if self.grpc is not None:
            await self.grpc.stop(grace_s)
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        if self.backlog is not None:
            self.backlog.stop()
            await self.backlog.run_once()
        if self.ratelimit_watcher is not None:
            self.ratelimit_watcher.stop()
        if self._journal_loop is not None:
            self._journal_loop.stop()
        await self.supervisor.stop()
        await self._close_journal()
        if self.key_usage is not None:  # the last minute's key uses, best effort and bounded
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.key_usage.flush(), 2.0)
        if self.billing is not None:
            await self.billing.close()
        if self.redis is not None:
            await self.redis.close()
