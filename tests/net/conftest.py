"""One real `gatekeeper serve` for every attack in this package (tests/net/target.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from gatekeeper.store.embedded import EmbeddedRedis
from tests.net.target import Serve, start_serve


@pytest.fixture(scope="package")
def serve(embedded_redis: EmbeddedRedis) -> Iterator[Serve]:
    yield from start_serve(embedded_redis.url, f"gkt-net-{uuid.uuid4().hex[:8]}")
