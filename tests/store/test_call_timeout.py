"""The decision journal keeps ids for twice the call timeout: the timeout it reads must be the
client's own, on one server and on a Cluster (whose client has no connection pool)."""

from __future__ import annotations

import pytest

from gatekeeper.settings import RedisSettings
from gatekeeper.store.connection import connect_cluster, connect_redis
from gatekeeper.store.redis_store import _call_timeout


@pytest.mark.parametrize("timeout", ["0.7", "2"])
async def test_the_journal_reads_the_call_timeout_of_the_url(timeout: str) -> None:
    settings = RedisSettings()
    single = connect_redis(f"redis://127.0.0.1:1/0?socket_timeout={timeout}", settings)
    cluster = connect_cluster(
        f"redis://127.0.0.1:1?socket_timeout={timeout},redis://127.0.0.1:2", settings
    )
    try:
        assert _call_timeout(single) == float(timeout)
        assert _call_timeout(cluster) == float(timeout)
    finally:
        await single.aclose()
        await cluster.aclose()
