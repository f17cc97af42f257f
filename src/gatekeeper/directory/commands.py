"""`gatekeeper import FILE`, `gatekeeper directory import FILE`, `gatekeeper directory export`.

Each is a `CommandSpec` (name, help, add_arguments, run) that cli.py turns into a subcommand.
Config as for `export`/`reconcile`: `--config`, else GATEKEEPER_CONFIG, else the packaged demo
policy; Redis from GATEKEEPER_REDIS_URL, else the embedded Redis of the data directory
(`--data-dir`, GATEKEEPER_DATA_DIR), shared with serve and the worker. Exit codes: 0 ok, 1
runtime failure (Redis), 2 bad input (a refused line included; export of a data directory with
no Redis data).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO

from redis.exceptions import RedisError

from gatekeeper.admin.customers import MAX_KEYS
from gatekeeper.clock import SystemClock
from gatekeeper.command_spec import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, CommandSpec
from gatekeeper.config import LoadedConfig, load_or_report
from gatekeeper.config.errors import ConfigIssue
from gatekeeper.data_location import add_data_dir_argument, env_with_data_dir
from gatekeeper.directory.bulk import (
    COLUMNS,
    BulkFormat,
    FileError,
    LineError,
    detect_format,
    export_line,
    read_entries,
)
from gatekeeper.directory.importer import Importer, ImportResult
from gatekeeper.directory.open import load_catalog
from gatekeeper.store.connection import RedisHandle, open_configured_redis
from gatekeeper.store.customers import CustomerRecords
from gatekeeper.store.datadir import DataDirMissing
from gatekeeper.store.keys import KeySpace

__all__ = ["DIRECTORY", "IMPORT", "CommandSpec"]


IMPORT_HELP = "import customers from JSON Lines or CSV (idempotent: run it again to resume)"
EXPORT_HELP = "write every customer of the directory as JSON Lines (what import reads)"

IMPORT_EPILOG = f"""\
formats (by extension, or --format):
  JSON Lines (.jsonl, .ndjson): one customer per line, the policy file's customer
    shape plus "id":
      {{"id": "acme", "plan": "pro", "billing_day": 15, "description": "…",
       "api_keys": [{{"id": "k1", "sha256": "<64 hex>", "expires_at": "2027-01-31T00:00:00Z"}}],
       "grants": [{{"feature": "llm_tokens", "amount": 1000000}}],
       "overrides": {{"chat_requests": {{"limit": 250000}}}}, "spend_cap": {{"amount": "250.00"}}}}
    ("source" and "updated_at", written by `directory export`, are ignored)
  CSV (.csv): a header row with some of these columns (id required):
      {",".join(COLUMNS)}
    overrides and grants cells hold JSON text; an empty cell is an absent field;
    consecutive rows with the same id each add one API key to that customer.

what an import does:
  a new customer is created; an existing one gets plan, billing_day, overrides, grants
  and description replaced by the line's (left out = removed), keeps its API keys (the
  line's are added by id; the same id with another hash refuses the line), its own spend
  cap and its webhooks. A line that changes nothing writes nothing: running the same file
  again imports 0, so an interrupted import is resumed by running it again. Each write is
  audited (customer.import) and applied by every running gatekeeper within a second.

where:
  the directory's Redis is GATEKEEPER_REDIS_URL with GATEKEEPER_REDIS_KEY_PREFIX, else the
  embedded Redis of the data directory (--data-dir, GATEKEEPER_DATA_DIR) that serve uses;
  plans are checked against the policy file's catalog with the plans set through the API.

output:
  each refused line on stderr as FILE:LINE: field: reason (the rest is imported), then
  "imported N, unchanged M, refused K" on stdout.
  exit 0: nothing refused; 2: some line refused or bad input; 1: Redis failed.
"""


def _redis_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="policy file (default: $GATEKEEPER_CONFIG, else demo)")
    add_data_dir_argument(parser)


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = IMPORT_EPILOG
    parser.add_argument(
        "file", metavar="FILE", help="customers to import (.jsonl, .ndjson or .csv; - = stdin)"
    )
    parser.add_argument(
        "--format",
        choices=[f.value for f in BulkFormat],
        help="the file's format (default: from its extension)",
    )
    parser.add_argument("--actor", default="cli", help="who the audit records name (default: cli)")
    _redis_arguments(parser)


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="write here (replaced once the export is complete; default: stdout)",
    )
    _redis_arguments(parser)


def _load(args: argparse.Namespace, env: Mapping[str, str], verb: str) -> LoadedConfig | None:
    env = env_with_data_dir(args, env)
    return load_or_report(args.config, env, lambda line: print(line, file=sys.stderr))


def _keys(loaded: LoadedConfig) -> KeySpace:
    s = loaded.settings.redis
    return KeySpace(prefix=s.key_prefix, partitions=s.partitions)


# ---- import ------------------------------------------------------------------------------------
def run_import(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Import FILE; refused lines to stderr, the summary to stdout."""
    loaded = _load(args, env, "import")
    if loaded is None:
        return EXIT_BAD_INPUT
    try:
        fmt = detect_format(args.file, args.format)
    except FileError as exc:
        print(f"import: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    name = "<stdin>" if args.file == "-" else args.file
    try:
        stream: IO[bytes] = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"import: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return asyncio.run(_import(loaded, stream, fmt, name, args.actor))
    except KeyboardInterrupt:
        return EXIT_FAILURE
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


async def _import(
    loaded: LoadedConfig, stream: IO[bytes], fmt: BulkFormat, name: str, actor: str
) -> int:
    def report(error: LineError) -> None:
        print(ConfigIssue(error.field, error.line, error.reason, name), file=sys.stderr)

    importer: Importer | None = None
    try:
        async with _redis(loaded, create=True) as handle:
            records = CustomerRecords(redis=handle.client, keys=_keys(loaded))
            catalog = await load_catalog(redis=handle.client, keys=records.keys, config=loaded)
            importer = Importer(
                records=records, catalog=catalog, clock=SystemClock(), actor=actor,
                report=report, max_keys=MAX_KEYS,
            )  # fmt: skip
            result = await importer.run(read_entries(stream, fmt))
    except FileError as exc:
        print(f"import: {name}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RedisError, OSError, RuntimeError) as exc:  # RuntimeError: Redis < 6.2
        _stopped(importer, f"failed ({exc})")  # DataDirError: the embedded one did not start
        return EXIT_FAILURE
    except asyncio.CancelledError:  # Ctrl-C
        _stopped(importer, "interrupted")
        raise
    print(result.summary())
    return EXIT_OK if result.refused == 0 else EXIT_BAD_INPUT


def _stopped(importer: Importer | None, why: str) -> None:
    done = ImportResult() if importer is None else importer.result
    print(
        f"import: {why} after {done.summary()}: run the same import again to finish it "
        "(what is imported is not imported twice)",
        file=sys.stderr,
    )


@asynccontextmanager
async def _redis(loaded: LoadedConfig, *, create: bool) -> AsyncIterator[RedisHandle]:
    """The directory's Redis, closed after use: GATEKEEPER_REDIS_URL, else the data
    directory's embedded one (`create` False: DataDirMissing when it holds no data)."""
    handle = await open_configured_redis(loaded.settings, create=create)
    try:
        yield handle
    finally:
        await handle.close()


# ---- export ------------------------------------------------------------------------------------
def run_export(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Write every record as JSON Lines to --out (replaced when complete) or stdout."""
    loaded = _load(args, env, "export")
    if loaded is None:
        return EXIT_BAD_INPUT
    try:
        with _output(args.out) as out:
            count = asyncio.run(_export(loaded, out))
    except OSError as exc:
        print(f"export: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if args.out and not Path(args.out).parent.is_dir() else EXIT_FAILURE
    except DataDirMissing as exc:  # nothing to export: never an empty backup of a wrong place
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RedisError, RuntimeError) as exc:
        print(f"export: redis: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    where = args.out or "stdout"
    print(f"exported {count} customer{'' if count == 1 else 's'} to {where}", file=sys.stderr)
    return EXIT_OK


async def _export(loaded: LoadedConfig, out: IO[str]) -> int:
    count = 0
    async with _redis(loaded, create=False) as handle:
        records = CustomerRecords(redis=handle.client, keys=_keys(loaded))
        async for record in records.scan():
            out.write(export_line(record))
            out.write("\n")
            count += 1
    return count


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    """stdout, or a temporary file beside `path` renamed onto it only when the export is
    complete (a failed export never leaves a truncated backup under the name)."""
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        with open(partial, "w", encoding="utf-8") as out:
            yield out
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


# ---- the commands ------------------------------------------------------------------------------
def _directory_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="directory_action", metavar="ACTION", required=True)
    export = actions.add_parser("export", help=EXPORT_HELP, description=EXPORT_HELP)
    _export_arguments(export)
    export.set_defaults(directory_run=run_export)
    import_ = actions.add_parser("import", help=IMPORT_HELP, description=IMPORT_HELP)
    _import_arguments(import_)
    import_.set_defaults(directory_run=run_import)


def run_directory(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    run: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.directory_run
    return run(args, env)


IMPORT = CommandSpec("import", IMPORT_HELP, _import_arguments, run_import)
DIRECTORY = CommandSpec(
    "directory",
    "the customer directory in bulk: export (backup) and import",
    _directory_arguments,
    run_directory,
)
