"""Billing store fixtures: one suite over SQLite and PostgreSQL.

PostgreSQL comes from GATEKEEPER_TEST_POSTGRES_DSN (default postgresql://postgres@127.0.0.1:5432/test).
Each test gets its own schema (gkt_<uuid>, dropped afterwards). PostgreSQL unreachable: the
postgres params are skipped when the variable is unset, and FAIL when it is set (CI sets it).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from gatekeeper.billing import BillingStore, PostgresBillingStore, SqliteBillingStore

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
STORE_KINDS = ["sqlite", "postgres"]


def pg_dsn() -> str:
    return os.environ.get("GATEKEEPER_TEST_POSTGRES_DSN") or DEFAULT_PG_DSN


async def _reachable(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def require_postgres() -> str:
    """The DSN to use; skips (env unset) or fails (env set) when PostgreSQL is unreachable."""
    dsn = pg_dsn()
    problem = await _reachable(dsn)
    if problem is not None:
        if os.environ.get("GATEKEEPER_TEST_POSTGRES_DSN"):
            pytest.fail(
                f"GATEKEEPER_TEST_POSTGRES_DSN is set but PostgreSQL is unreachable: {problem}"
            )
        pytest.skip(
            f"PostgreSQL at {dsn} unreachable ({problem}); set GATEKEEPER_TEST_POSTGRES_DSN"
        )
    return dsn


@dataclass
class StoreTarget:
    """Where a test's billing store lives: open() gives a new connection to the same data."""

    kind: str
    dsn: str  # GATEKEEPER_BILLING_DSN for a subprocess or the CLI (postgres: with search_path)
    schema: str | None = None
    path: Path | None = None

    async def open(self) -> BillingStore:
        if self.kind == "sqlite":
            assert self.path is not None
            return await SqliteBillingStore.open(self.path)
        return await PostgresBillingStore.connect(
            self.dsn, server_settings={"search_path": self.schema or "public"}
        )


@pytest.fixture(params=STORE_KINDS)
async def store_target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreTarget]:
    if request.param == "sqlite":
        path = tmp_path / "billing.sqlite"
        yield StoreTarget("sqlite", f"sqlite://{path}", path=path)
        return
    dsn = await require_postgres()
    schema = f"gkt_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in dsn else "?"
        # libpq-style options: the subprocess worker and the CLI land in the test's schema too.
        yield StoreTarget("postgres", f"{dsn}{sep}options=-csearch_path%3D{schema}", schema=schema)
    finally:
        await asyncio.sleep(0)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


@pytest.fixture
async def store(store_target: StoreTarget) -> AsyncIterator[BillingStore]:
    s = await store_target.open()
    try:
        yield s
    finally:
        await s.close()


async def raw(store: BillingStore, query: str) -> list[tuple[object, ...]]:
    """Run SQL on the store's own connection (tests only: schema checks, tamper attempts)."""
    if isinstance(store, SqliteBillingStore):
        conn = store._conn
        rows = await conn.execute_fetchall(query)
        return [tuple(r) for r in rows]
    assert isinstance(store, PostgresBillingStore)
    async with store._pool.acquire() as conn:
        return [tuple(r) for r in await conn.fetch(query)]
