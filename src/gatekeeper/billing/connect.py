"""Open the configured billing store: PostgreSQL for a `postgresql://` DSN, else a SQLite file.

DSN forms: `postgresql://...` or `postgres://...` (asyncpg); `sqlite:///abs/path.sqlite` or
`sqlite:relative.sqlite`. No DSN: the SQLite file `default_sqlite_path`
(commands pass `<data dir>/billing.sqlite`, gatekeeper/data_location.py).
"""

from __future__ import annotations

from gatekeeper.billing.postgres import PostgresBillingStore
from gatekeeper.billing.protocol import BillingStore
from gatekeeper.billing.sqlite import SqliteBillingStore
from gatekeeper.settings import Secret

__all__ = ["DEFAULT_SQLITE_PATH", "describe_dsn", "open_store", "sqlite_file"]

DEFAULT_SQLITE_PATH = "./gatekeeper-data/billing.sqlite"  # in the default data directory


def _sqlite_path(dsn: str) -> str | None:
    if dsn.startswith("sqlite://"):
        return dsn[len("sqlite://") :]
    if dsn.startswith("sqlite:"):
        return dsn[len("sqlite:") :]
    return None


def sqlite_file(dsn: Secret | None, default_sqlite_path: str) -> str | None:
    """The SQLite file `open_store(dsn, default_sqlite_path=...)` would open; None for
    PostgreSQL (or an unknown scheme, which open_store refuses)."""
    return default_sqlite_path if dsn is None else _sqlite_path(dsn.value)


def describe_dsn(dsn: Secret | None, default_sqlite_path: str = DEFAULT_SQLITE_PATH) -> str:
    """Where the store is, without credentials (for logs)."""
    if dsn is None:
        return f"sqlite:{default_sqlite_path}"
    path = _sqlite_path(dsn.value)
    return f"sqlite:{path}" if path is not None else "postgresql (GATEKEEPER_BILLING_DSN)"


async def open_store(
    dsn: Secret | None, *, default_sqlite_path: str = DEFAULT_SQLITE_PATH
) -> BillingStore:
    """Connect and migrate. Raises ValueError for an unknown DSN scheme, BillingStoreError."""
    if dsn is None:
        return await SqliteBillingStore.open(default_sqlite_path)
    path = _sqlite_path(dsn.value)
    if path is not None:
        if not path:
            raise ValueError("GATEKEEPER_BILLING_DSN: sqlite DSN without a path")
        return await SqliteBillingStore.open(path)
    if dsn.value.startswith(("postgresql://", "postgres://")):
        return await PostgresBillingStore.connect(dsn.value)
    raise ValueError(
        "GATEKEEPER_BILLING_DSN: expected postgresql://..., postgres://... or sqlite:PATH"
    )
