"""Redis selection: GATEKEEPER_REDIS_URL when set, else an embedded server the process owns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gatekeeper.settings import RedisSettings, Secret
from gatekeeper.store import open_redis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_embedded_redis_starts_serves_and_stops_cleanly() -> None:
    handle = await open_redis(RedisSettings(url=None))
    assert handle.embedded is not None and handle.embedded.pid is not None
    pid = handle.embedded.pid
    assert await handle.client.ping()
    info = await handle.client.info("server")
    assert tuple(int(x) for x in info["redis_version"].split(".")[:2]) >= (6, 2)
    await handle.close()
    assert not _alive(pid) or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.skipif(
    not os.environ.get("GATEKEEPER_REDIS_URL"), reason="GATEKEEPER_REDIS_URL not set"
)
async def test_external_url_is_used_and_not_echoed() -> None:
    handle = await open_redis(RedisSettings(url=Secret(os.environ["GATEKEEPER_REDIS_URL"])))
    assert handle.embedded is None
    assert await handle.client.ping()
    assert "redis://" not in handle.url
    await handle.close()


async def test_unreachable_url_fails_fast() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    with pytest.raises(RedisConnectionError):
        await open_redis(RedisSettings(url=Secret("redis://127.0.0.1:1/0")))


def test_secret_repr_is_masked() -> None:
    assert "hunter2" not in repr(Secret("redis://:hunter2@host/0"))
