"""`gatekeeper serve`: the gRPC server (and, with --workers N, N processes on one port)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping

from gatekeeper.app import App
from gatekeeper.command_spec import CommandSpec
from gatekeeper.config import ConfigError, LoadedConfig, load_or_report
from gatekeeper.data_location import (
    add_data_dir_argument,
    billing_sqlite_path,
    describe_data,
    env_with_data_dir,
)
from gatekeeper.store.datadir import DataDir, open_shared_redis
from gatekeeper.store.embedded import EmbeddedRedisError
from gatekeeper.tracing import Tracing, TracingConfigError, parse_tracing_env

__all__ = ["SERVE", "add_serve_arguments", "run_serve"]

log = logging.getLogger("gatekeeper")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="policy file (default: $GATEKEEPER_CONFIG, else the demo policy)"
    )
    parser.add_argument("--host", help="bind address (default: settings.server.host)")
    parser.add_argument(
        "--grpc-port", type=int, help="gRPC port (default: settings.server.grpc_port)"
    )
    parser.add_argument(
        "--authz-http-port",
        type=int,
        help="ext_authz HTTP-mode port (default: settings.server.authz_http_port)",
    )
    parser.add_argument(
        "--http-port", type=int, help="HTTP API/health port (default: settings.server.http_port)"
    )
    parser.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")
    parser.add_argument(
        "--sqlite-path",
        help="SQLite billing file the API reads when GATEKEEPER_BILLING_DSN is unset "
        "(default: <data dir>/billing.sqlite; the worker's --sqlite-path)",
    )
    add_data_dir_argument(parser)
    parser.add_argument("--log-level", default="INFO")
    # set by `--workers N` on its children only: they share the ports (SO_REUSEPORT); a lone
    # serve does not, so a second one on the same ports fails instead of taking half the load
    parser.add_argument("--shared-ports", action="store_true", help=argparse.SUPPRESS)


async def _serve_one(
    config: LoadedConfig, args: argparse.Namespace, tracing: Tracing | None = None
) -> int:
    sqlite_path = billing_sqlite_path(config.settings, args.sqlite_path)
    log.info("%s", describe_data(config.settings, sqlite_path))
    app = App(
        config,
        billing_sqlite_path=sqlite_path,
        share_ports=args.shared_ports,
        tracing=tracing,
    )
    del config  # the App keeps what it needs of it (not a policy file's customers, once seeded)
    try:
        return await _serve_app(app, args)
    finally:
        if tracing is not None:  # export what is queued, bounded
            await tracing.aclose()


async def _serve_app(app: App, args: argparse.Namespace) -> int:
    try:
        await app.start(
            host=args.host,
            grpc_port=args.grpc_port,
            authz_http_port=args.authz_http_port,
            http_port=args.http_port,
        )
    except ConfigError as exc:  # e.g. the rate limit config: every issue, exit 2
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        await app.stop(0)
        return 2
    except Exception as exc:  # startup failure: say what and exit 1
        log.error("gatekeeper could not start: %s", exc)
        await app.stop(0)
        return 1
    # What start built lives as long as the process: moved out of the cyclic collector's way,
    # so a full collection while serving walks only what serving allocates (~40 ms less of
    # event loop stall per full pass). Reference counting still frees any of it.
    gc.collect()
    gc.freeze()
    app.metrics.collector.install()  # every pass timed on /metrics from now on
    host = args.host or app.config.settings.server.host
    ready = (
        f"gatekeeper: serving gRPC on {host}:{app.grpc_port}, "
        f"ext_authz HTTP on {host}:{app.authz_http_port}, API on {host}:{app.http_port}\n"
    )
    # one write (< PIPE_BUF): ready lines of several workers sharing a pipe never interleave
    os.write(sys.stdout.fileno(), ready.encode())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: not-ready, draining")
    app.metrics.collector.remove()
    await app.stop(grace_s=5.0)
    return 0


def _run_workers(
    config: LoadedConfig, args: argparse.Namespace, env: Mapping[str, str], n: int
) -> int:
    child_env = dict(env)
    shared = None
    if config.settings.redis.url is None:  # the data directory's Redis, for every worker
        try:
            shared = open_shared_redis(DataDir.at(config.settings.data_dir), create=True)
        except EmbeddedRedisError as exc:
            log.error("gatekeeper could not start: %s", exc)
            return 1
        child_env["GATEKEEPER_REDIS_URL"] = shared.url
        log.info("embedded Redis for %d workers: data in %s", n, shared.data.redis_dir)
    argv = [sys.executable, "-m", "gatekeeper", "serve", "--workers", "1", "--shared-ports"]
    for flag, value in (
        ("--config", args.config),
        ("--host", args.host),
        ("--grpc-port", args.grpc_port),
        ("--authz-http-port", args.authz_http_port),
        ("--http-port", args.http_port),
        ("--log-level", args.log_level),
        ("--sqlite-path", args.sqlite_path),
    ):
        if value is not None:
            argv += [flag, str(value)]
    children = [subprocess.Popen(argv, env=child_env) for _ in range(n)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    if shared is not None:
        shared.close()
    return max(codes)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run_serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    env = env_with_data_dir(args, env)
    config = load_or_report(args.config, env, _stderr)
    if config is None:
        return 2
    try:  # checked here, so a bad variable stops `--workers N` before any child starts
        tracing_config = parse_tracing_env(env, service_name="gatekeeper")
    except TracingConfigError as exc:
        _stderr(f"tracing: {exc}")
        return 2
    workers = args.workers or config.settings.server.workers
    if workers > 1:
        return _run_workers(config, args, env, workers)  # each child traces on its own
    try:
        import uvloop  # optional: faster event loop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    tracing = None
    if tracing_config is not None:
        log.info("tracing on: OTLP (%s) to %s", tracing_config.protocol, tracing_config.endpoint)
        tracing = Tracing(tracing_config)
    serving = _serve_one(config, args, tracing)
    # nothing here holds the parsed policy file while serving: a file that lists 100,000
    # customers is ~0.5 GB parsed, and the directory holds them once they are seeded
    del config
    return asyncio.run(serving)


SERVE = CommandSpec(
    "serve",
    "serve Envoy ext_authz, rate limit and access log, and the gatekeeper gRPC API",
    add_serve_arguments,
    run_serve,
)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_serve(argparse.Namespace(), os.environ))
