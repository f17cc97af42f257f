"""A Redis server each failure test starts itself, so it may kill clients, flush or restart it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.store.embedded import EmbeddedRedis
from tests.e2e.harness import free_port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """TCP on a free port and a unix socket; restartable (same port and directory)."""
    server = EmbeddedRedis(port=free_port(), directory=tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
