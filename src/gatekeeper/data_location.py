"""Where a command's data lives: `--data-dir` / GATEKEEPER_DATA_DIR, the default SQLite billing
file inside it, and the check read-only commands make before opening anything.

`serve` and `worker` create what is missing (that is their job); `export` and `reconcile` call
`missing_data` first and exit 2 with its message instead of opening an empty store.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from gatekeeper.billing import describe_dsn, sqlite_file
from gatekeeper.settings import DEFAULT_DATA_DIR, Settings
from gatekeeper.store.datadir import DataDir

__all__ = [
    "add_data_dir_argument",
    "billing_sqlite_path",
    "describe_data",
    "env_with_data_dir",
    "missing_data",
]


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="embedded Redis data and the default SQLite billing file "
        f"(default: $GATEKEEPER_DATA_DIR, else {DEFAULT_DATA_DIR})",
    )


def env_with_data_dir(args: argparse.Namespace, env: Mapping[str, str]) -> Mapping[str, str]:
    """`env` with `--data-dir` as GATEKEEPER_DATA_DIR (so child processes inherit it)."""
    data_dir = getattr(args, "data_dir", None)
    return env if not data_dir else {**env, "GATEKEEPER_DATA_DIR": str(data_dir)}


def billing_sqlite_path(settings: Settings, override: str | None, *, create: bool = False) -> str:
    """`--sqlite-path` when given, else `<data dir>/billing.sqlite`; with `create`, the data
    directory is made when that default is the store (serve, worker)."""
    if override:
        return override
    data = DataDir.at(settings.data_dir)
    if create and settings.billing.dsn is None:
        data.root.mkdir(parents=True, exist_ok=True)
    return str(data.billing_sqlite)


def describe_data(settings: Settings, sqlite_path: str) -> str:
    """One line for the start log: where this command's Redis and billing data live."""
    if settings.redis.url is None:
        redis = f"embedded Redis in {DataDir.at(settings.data_dir).redis_dir}"
    else:
        redis = "Redis at GATEKEEPER_REDIS_URL"
    return f"data: {redis}; billing store {describe_dsn(settings.billing.dsn, sqlite_path)}"


def missing_data(settings: Settings, sqlite_path: str, *, redis: bool) -> str | None:
    """Why a read-only command must not go on (its store would be created empty), or None.

    The billing SQLite file must exist; with `redis` and no GATEKEEPER_REDIS_URL, the data
    directory must hold embedded Redis data.
    """
    path = sqlite_file(settings.billing.dsn, sqlite_path)
    if path is not None and not Path(path).is_file():
        return f"no billing data at {path} (wrong --data-dir or --sqlite-path?)"
    data = DataDir.at(settings.data_dir)
    if redis and settings.redis.url is None and not data.has_redis_data():
        return f"no embedded Redis data at {data.aof} (wrong --data-dir?)"
    return None
