"""`gatekeeper worker`, `gatekeeper export`, `gatekeeper reconcile` (DESIGN.md §6).

Each is a `CommandSpec` (name, help, add_arguments, run) that cli.py turns into a subcommand;
they are plain tuples so this module need not import gatekeeper.cli (which imports it).
Config: `--config`, else GATEKEEPER_CONFIG, else the packaged demo policy; settings from env.
Exit codes: 0 ok, 1 runtime failure (or differences found by reconcile), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from redis.exceptions import RedisError

from gatekeeper.billing import (
    BillingCalendar,
    BillingStoreError,
    describe_dsn,
    open_store,
    parse_period,
)
from gatekeeper.billing.export import (
    ExportMismatch,
    build_invoice,
    write_cloudevents,
    write_csv,
    write_json,
)
from gatekeeper.clock import SystemClock
from gatekeeper.command_spec import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, CommandSpec
from gatekeeper.config import LoadedConfig, load_or_report
from gatekeeper.data_location import (
    add_data_dir_argument,
    billing_sqlite_path,
    describe_data,
    env_with_data_dir,
    missing_data,
)
from gatekeeper.directory.listener import InvalidationLoop
from gatekeeper.directory.open import load_catalog, open_directory
from gatekeeper.notify.forecast_alerts import ForecastAlerter
from gatekeeper.pipeline.alert_log import AlertLog
from gatekeeper.pipeline.forecasting import ForecastLoop, LedgerSeries
from gatekeeper.pipeline.forwarding import build_forwarder, build_notifier
from gatekeeper.pipeline.reconcile import holds_usage, reconcile
from gatekeeper.pipeline.resets import ResetAnnouncer
from gatekeeper.pipeline.worker import BillingWorker, WorkerFailed, WorkerOptions, consumer_name
from gatekeeper.settings import Settings
from gatekeeper.store.connection import open_configured_redis
from gatekeeper.store.datadir import DataDir, DataDirMissing
from gatekeeper.store.keys import KeySpace
from gatekeeper.tracing import Tracing, TracingConfigError

__all__ = ["EXPORT", "RECONCILE", "WORKER", "CommandSpec"]

log = logging.getLogger("gatekeeper.worker")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="policy file (default: $GATEKEEPER_CONFIG, else demo)")
    parser.add_argument(
        "--sqlite-path",
        help="SQLite billing file when GATEKEEPER_BILLING_DSN is unset "
        "(default: <data dir>/billing.sqlite)",
    )
    add_data_dir_argument(parser)


def _load(args: argparse.Namespace, env: Mapping[str, str]) -> LoadedConfig | None:
    env = env_with_data_dir(args, env)
    return load_or_report(args.config, env, lambda line: print(line, file=sys.stderr))


def _logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


# the worker's log line once its store is open and its signal handlers are set (the demo
# waits for it, so a stop never finds the worker still starting)
WORKER_READY = " partitions of "


# -- worker ------------------------------------------------------------------------------------
def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    d = WorkerOptions(consumer="-")
    parser.add_argument("--consumer", help="consumer name (default: host-pid-random, unique)")
    parser.add_argument("--batch", type=int, default=d.batch, help="entries per store commit")
    parser.add_argument("--block-ms", type=int, default=d.block_ms)
    parser.add_argument("--max-in-flight", type=int, default=d.max_in_flight)
    parser.add_argument("--min-idle-ms", type=int, default=d.min_idle_ms,
                        help="reclaim entries pending this long with another consumer")  # fmt: skip
    parser.add_argument("--reclaim-interval", type=float, default=d.reclaim_interval_s)
    parser.add_argument("--max-tries", type=int, default=d.max_tries,
                        help="deliveries before a failing entry is dead-lettered")  # fmt: skip
    parser.add_argument("--forecast-interval", type=float, default=900.0,
                        help="seconds between forecast/anomaly alert checks")  # fmt: skip
    parser.add_argument("--trim-interval", type=float, default=d.trim_interval_s,
                        help="seconds between stream trims (0 = never)")  # fmt: skip


def run_worker(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the billing sink until SIGTERM/SIGINT (then finish the batch in hand, exit 0)."""
    _logging()
    loaded = _load(args, env)
    if loaded is None:
        return EXIT_BAD_INPUT
    try:
        options = WorkerOptions(
            consumer=args.consumer or consumer_name(), batch=args.batch, block_ms=args.block_ms,
            max_in_flight=args.max_in_flight, min_idle_ms=args.min_idle_ms,
            reclaim_interval_s=args.reclaim_interval, max_tries=args.max_tries,
            trim_interval_s=args.trim_interval,
        )  # fmt: skip
    except ValueError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        tracing = Tracing.from_env(env, service_name="gatekeeper-worker")
    except TracingConfigError as exc:
        print(f"worker: tracing: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sqlite_path = billing_sqlite_path(loaded.settings, args.sqlite_path, create=True)
    try:
        return asyncio.run(
            _worker(loaded, options, sqlite_path, env, args.forecast_interval, tracing)
        )
    finally:
        if tracing is not None:  # export what is queued (bounded by the export timeout)
            tracing.shutdown()


async def _worker(
    loaded: LoadedConfig,
    options: WorkerOptions,
    sqlite_path: str,
    env: Mapping[str, str],
    forecast_interval_s: float = 900.0,
    tracing: Tracing | None = None,
) -> int:
    settings = loaded.settings
    log.info("%s", describe_data(settings, sqlite_path))
    try:
        store = await open_store(settings.billing.dsn, default_sqlite_path=sqlite_path)
    except (ValueError, BillingStoreError) as exc:
        log.error("billing store %s: %s", describe_dsn(settings.billing.dsn, sqlite_path), exc)
        return EXIT_FAILURE
    try:
        handle = await open_configured_redis(settings)
    except Exception as exc:
        log.error("redis: %s", exc)
        await store.close()
        return EXIT_FAILURE
    keys = KeySpace(prefix=settings.redis.key_prefix, partitions=settings.redis.partitions)
    try:
        directory = await open_directory(
            redis=handle.client, keys=keys, config=loaded, seed_at=SystemClock().now()
        )
    except RedisError as exc:
        log.error("redis: %s", exc)
        await handle.close()
        await store.close()
        return EXIT_FAILURE

    async def catalog_changed(data: bytes) -> None:
        directory.set_catalog(await load_catalog(redis=handle.client, keys=keys, config=loaded))

    watch = InvalidationLoop(
        redis=handle.client, channel=keys.invalidate_channel(), directory=directory,
        on_other=catalog_changed,
    )  # fmt: skip
    worker = BillingWorker(
        redis=handle.client, store=store, keys=keys,
        calendar=BillingCalendar(directory), clock=SystemClock(), options=options,
        tracing=tracing,
    )  # fmt: skip
    forwarding = build_forwarder(
        settings.forwarder, redis=handle.client, keys=keys, consumer=options.consumer
    )
    try:
        notifier = build_notifier(
            settings.alerts, env, redis=handle.client, keys=keys, consumer=options.consumer,
            policy=directory, tracing=tracing, store=store,
        )  # fmt: skip
    except ValueError as exc:  # a webhook secret malformed or not configured: bad input
        log.error("alerts: %s", exc)
        await handle.close()
        await store.close()
        return EXIT_BAD_INPUT
    # every alert into the billing store's alert log (GET /v1/customers/{id}/alerts)
    loops: list[Loop] = [
        worker,
        watch,
        AlertLog(
            redis=handle.client,
            store=store,
            keys=keys,
            consumer=options.consumer,
            block_ms=options.block_ms,
        ),
    ]
    if forwarding is not None:
        loops.append(forwarding[0])
        log.info("forwarding usage events as CloudEvents to %s", settings.forwarder.url)
    if notifier is not None:
        loops.append(notifier)
        log.info(
            "delivering alerts to %d operator webhook endpoint(s) and customers' own",
            len(settings.alerts.webhooks),
        )
    alerter = ForecastAlerter(
        redis=handle.client, keys=keys, series=LedgerSeries(store), policy=directory,
        clock=SystemClock(), customer_ids=directory.records.id_chunks,
    )  # fmt: skip
    loops.append(ForecastLoop(alerter, interval_s=forecast_interval_s))
    loops.append(ResetAnnouncer(redis=handle.client, keys=keys, clock=SystemClock()))

    asked_to_stop = asyncio.Event()

    def stop() -> None:
        for loop_ in loops:
            loop_.stop()
        asked_to_stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    log.info(
        "worker %s: %d" + WORKER_READY + "%s, store %s", options.consumer, keys.partitions,
        handle.url, describe_dsn(settings.billing.dsn, sqlite_path),
    )  # fmt: skip
    try:
        await _run_all(loops, stopped=asked_to_stop, grace_s=STOP_GRACE_S)
    except WorkerFailed as exc:
        log.error("worker failed: %s", exc)
        return EXIT_FAILURE
    except Exception as exc:  # a forwarder or notifier loop died: not silent, exit 1
        log.error("worker loop failed: %r", exc)
        return EXIT_FAILURE
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        closing = [handle.close(), store.close()]
        if forwarding is not None:
            closing.insert(0, forwarding[1].aclose())
        if notifier is not None:
            closing.insert(0, notifier.aclose())
        for close in closing:  # each bounded: a close stuck on a dead peer must not hold the exit
            try:
                await asyncio.wait_for(close, CLOSE_TIMEOUT_S)
            except Exception as exc:  # logged, then the next: the process is exiting
                log.warning("worker shutdown: a close did not finish (%r)", exc)
    s = worker.stats
    log.info("worker stopped: stored=%d duplicates=%d acked=%d dead_lettered=%d errors=%s",
             s.stored, s.duplicates, s.acked, s.dead_lettered, dict(s.errors))  # fmt: skip
    return EXIT_OK


class Loop(Protocol):
    async def run(self) -> None: ...
    def stop(self) -> None: ...


STOP_GRACE_S = 6.0  # after SIGTERM: loops finish their batches in this, or are cancelled
CLOSE_TIMEOUT_S = 2.0  # each connection or pool closed on the way out


async def _run_all(
    loops: Sequence[Loop], *, stopped: asyncio.Event | None = None, grace_s: float = STOP_GRACE_S
) -> None:
    """Run every loop; the first to fail stops the others and its exception is raised.

    Once `stopped` is set (SIGTERM), loops that have not returned after `grace_s` are logged
    with where each task waits, then cancelled: a shutdown is bounded (what they held stays
    pending and is taken over by the next worker), and a stuck one says where it was stuck."""
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    watchdog = asyncio.create_task(_bound_shutdown(tasks, stopped, grace_s))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        watchdog.cancel()
    for task in done:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            for loop in loops:
                loop.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise exc
    await asyncio.gather(*tasks, return_exceptions=True)  # all done; cancelled ones logged


def _await_chain(coro: object) -> str:
    """Where a task's coroutine waits: each awaited coroutine's file, line and function."""
    lines = []
    for _ in range(64):  # bounded: a chain is a few frames deep
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        code = frame.f_code
        lines.append(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return "\n".join(lines) or "    (no frame)"


async def _bound_shutdown(
    tasks: Sequence[asyncio.Task[None]], stopped: asyncio.Event | None, grace_s: float
) -> None:
    if stopped is None:
        return
    await stopped.wait()
    _, pending = await asyncio.wait(tasks, timeout=grace_s)
    if not pending:
        return
    log.error("worker shutdown: %d loop(s) still running %.0f s after stop", len(pending), grace_s)
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not current and not task.done():
            log.error("  still waiting: %s\n%s", task.get_name(), _await_chain(task.get_coro()))
    for task in pending:
        task.cancel()


# -- export ------------------------------------------------------------------------------------
def _export_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--customer", required=True)
    parser.add_argument("--period", required=True,
                        help="YYYY-MM-DD: the period containing that day; YYYY-MM: the period "
                             "starting in that month")  # fmt: skip
    parser.add_argument("--format", choices=("csv", "json", "both", "cloudevents", "all"),
                        default="both",
                        help="csv / json: the invoice with its event ids; both: csv and json "
                             "(default); cloudevents: the period's usage events as a CloudEvents "
                             "1.0 batch; all: the three")  # fmt: skip
    parser.add_argument(
        "--out", default=".", help="directory for the files, made when missing (default: .)"
    )


def run_export(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Write the customer's invoice for the period as CSV and/or JSON; print the paths."""
    loaded = _load(args, env)
    if loaded is None:
        return EXIT_BAD_INPUT
    try:
        period = parse_period(args.period)
    except ValueError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"export: --out {out} is not a directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    sqlite_path = billing_sqlite_path(loaded.settings, args.sqlite_path)
    missing = missing_data(loaded.settings, sqlite_path, redis=False)
    if missing is not None:
        print(f"export: {missing}", file=sys.stderr)
        return EXIT_BAD_INPUT

    async def go() -> int:
        known, billing_day = await _billing_day(loaded, args.customer)
        window = period.window(billing_day)
        store = await open_store(loaded.settings.billing.dsn, default_sqlite_path=sqlite_path)
        try:
            invoice = await build_invoice(store, args.customer, window)
        finally:
            await store.close()
        if not known and not invoice.lines:  # an empty invoice of a customer nobody knows
            print(
                f"export: unknown customer {args.customer!r}: not in the policy file or the "
                "directory, and no usage billed to it in the period",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        try:  # `--out exports/` names the folder to write in: made when missing
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"export: --out {out}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        paths = []
        if args.format in ("csv", "both", "all"):
            paths.append(write_csv(invoice, out))
        if args.format in ("json", "both", "all"):
            paths.append(write_json(invoice, out))
        if args.format in ("cloudevents", "all"):
            source = loaded.settings.forwarder.source
            paths.append(write_cloudevents(invoice, out, source=source))
        for path in paths:
            print(path)
        return EXIT_OK

    try:
        return asyncio.run(go())
    except DataDirMissing as exc:
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, BillingStoreError, ExportMismatch, OSError, RedisError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_FAILURE


async def _billing_day(loaded: LoadedConfig, customer_id: str) -> tuple[bool, int | None]:
    """Whether the customer is known, and its billing day: the policy file's, else the
    directory's (in Redis: the URL or the data directory's, never an empty one started here:
    DataDirMissing); (False, None) for a customer neither knows (calendar months)."""
    customer = loaded.policy.customers.get(customer_id)
    if customer is not None:
        return True, customer.billing_day
    handle = await open_configured_redis(loaded.settings, create=False)
    try:
        s = loaded.settings.redis
        keys = KeySpace(prefix=s.key_prefix, partitions=s.partitions)
        directory = await open_directory(redis=handle.client, keys=keys, config=loaded)
        found = await directory.customer(customer_id)
    finally:
        await handle.close()
    return (False, None) if found is None else (True, found.billing_day)


# -- reconcile ---------------------------------------------------------------------------------
def _reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--period", required=True, help="as for export")
    parser.add_argument("--customer", help="only this customer (default: all)")


def run_reconcile(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print each difference between Redis counters and the store; exit 1 if there is any."""
    loaded = _load(args, env)
    if loaded is None:
        return EXIT_BAD_INPUT
    try:
        period = parse_period(args.period)
    except ValueError as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    s = loaded.settings
    sqlite_path = billing_sqlite_path(s, args.sqlite_path)
    missing = missing_data(s, sqlite_path, redis=True)
    if missing is not None:
        print(f"reconcile: {missing}", file=sys.stderr)
        return EXIT_BAD_INPUT

    async def go() -> int:
        store = await open_store(s.billing.dsn, default_sqlite_path=sqlite_path)
        try:
            handle = await open_configured_redis(s, create=False)
            try:
                keys = KeySpace(prefix=s.redis.key_prefix, partitions=s.redis.partitions)
                if not await holds_usage(handle.client, keys):
                    print(
                        f"reconcile: {_redis_named(s)} holds no gatekeeper usage under key "
                        f"prefix {keys.prefix!r} (no usage stream in any of its "
                        f"{keys.partitions} partitions): nothing to compare with the billing "
                        "store (wrong GATEKEEPER_REDIS_URL, GATEKEEPER_REDIS_KEY_PREFIX, "
                        "GATEKEEPER_REDIS_PARTITIONS or --data-dir?)",
                        file=sys.stderr,
                    )
                    return EXIT_BAD_INPUT
                directory = await open_directory(redis=handle.client, keys=keys, config=loaded)
                report = await reconcile(
                    redis=handle.client, store=store, policy=directory, period=period,
                    keys=keys, customers=[args.customer] if args.customer else None,
                    now=SystemClock().now(), grace=timedelta(seconds=s.redis.period_grace_s),
                    directory_ids=directory.records.id_chunks,
                )  # fmt: skip
            finally:
                await handle.close()
        finally:
            await store.close()
        for diff in report.differences:
            print(f"DIFF {diff}")
        for note in report.skipped:
            print(f"skipped {note}")
        n = len(report.differences)
        print(f"{report.compared} counters compared, {n} difference{'' if n == 1 else 's'}")
        return EXIT_FAILURE if n else EXIT_OK

    try:
        return asyncio.run(go())
    except DataDirMissing as exc:  # its Redis data went away since the check above
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # the CLI edge: report, never a traceback
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _redis_named(settings: Settings) -> str:
    """The Redis a command uses, for a message (never the URL: it may hold a password)."""
    if settings.redis.url is not None:
        return "the Redis at GATEKEEPER_REDIS_URL"
    return f"the embedded Redis in {DataDir.at(settings.data_dir).redis_dir}"


WORKER = CommandSpec("worker", "billing sink: usage streams -> billing store, exactly once",
                     _worker_arguments, run_worker)  # fmt: skip
EXPORT = CommandSpec("export", "write a customer's invoice for a billing period (CSV/JSON)",
                     _export_arguments, run_export)  # fmt: skip
RECONCILE = CommandSpec("reconcile", "compare Redis counters with the billing store",
                        _reconcile_arguments, run_reconcile)  # fmt: skip
