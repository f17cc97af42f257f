"""A real gatekeeper App (embedded Redis, SQLite billing store) serving the HTTP API."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gatekeeper.app import App
from gatekeeper.config import load_config
from tests.conftest import RedisTarget

POLICY = Path(__file__).parents[1] / "e2e" / "policy.yaml"
ADMIN = "bootstrap-operator-token"


def key_of(customer: str) -> str:
    """The e2e policy's API key of a customer (its sha256 is in the file)."""
    return f"gk-test-{customer}"


@dataclass
class Api:
    app: App
    session: aiohttp.ClientSession
    base: str

    async def call(
        self, method: str, path: str, token: str | None = ADMIN, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers, params=params or None
        ) as response:
            text = await response.text()
            data = None
            if text:
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = text
            return response.status, data


async def start_app(
    redis_url: str,
    prefix: str,
    sqlite_path: str,
    policy: Path = POLICY,
    extra_env: dict[str, str] | None = None,
    *,
    cluster: bool = False,
) -> App:
    """An App on free ports; `redis_url` lists the seeds of a Redis Cluster with `cluster`."""
    env = {
        "GATEKEEPER_REDIS_URL": redis_url,
        "GATEKEEPER_REDIS_KEY_PREFIX": prefix,
        "GATEKEEPER_ADMIN_TOKEN": ADMIN,
        **({"GATEKEEPER_REDIS_CLUSTER": "true"} if cluster else {}),
        **(extra_env or {}),
    }
    app = App(load_config(policy, env=env), billing_sqlite_path=sqlite_path)
    return await app.start(host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0)


@pytest.fixture
async def api(app_target: RedisTarget, key_prefix: str, tmp_path: Path) -> AsyncIterator[Api]:
    """An App on the embedded Redis (also on the local Cluster for tests marked `cluster`)."""
    app = await start_app(
        app_target.url, key_prefix, str(tmp_path / "billing.sqlite"), cluster=app_target.cluster
    )
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(app, session, f"http://127.0.0.1:{app.http_port}")
    finally:
        await app.stop(0)


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
