"""URLs are read as redis-py reads them, and the auto-pipeline speaks AUTH and SELECT."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from gatekeeper.errors import StoreUnavailable
from gatekeeper.store.autopipeline import AutoPipeline
from gatekeeper.store.embedded import EmbeddedRedis
from gatekeeper.store.endpoint import Endpoint


def test_urls_parse_like_redis_py() -> None:
    ep = Endpoint.from_url("redis://user:secret@cache.local:6380/3?socket_timeout=2")
    assert ep is not None
    assert (ep.host, ep.port, ep.path, ep.db, ep.username, ep.password) == (
        "cache.local",
        6380,
        None,
        3,
        "user",
        "secret",
    )
    assert (ep.timeout_s, ep.connect_timeout_s) == (2.0, 5)
    assert "secret" not in repr(ep) and ep.where == "cache.local:6380"
    unix = Endpoint.from_url("unix:///run/redis.sock?db=2")
    assert unix is not None and (unix.path, unix.db, unix.where) == (
        "/run/redis.sock",
        2,
        "unix:/run/redis.sock",
    )
    plain = Endpoint.from_url("redis://:pw@localhost")
    assert plain is not None and (plain.port, plain.db, plain.username, plain.password) == (
        6379,
        0,
        None,
        "pw",
    )
    tls = Endpoint.from_url("rediss://cache.local:6380/0?ssl_check_hostname=false")
    assert tls is not None and tls.tls is not None and tls.server_hostname is None
    assert (tls.host, tls.port) == ("cache.local", 6380)  # TLS: the fast path too (test_tls)


async def test_select_and_auth_with_username_and_password(own_redis: EmbeddedRedis) -> None:
    admin = Redis.from_url(own_redis.url)
    await admin.execute_command("ACL", "SETUSER", "gk", "on", ">s3cret", "~*", "+@all")
    url = f"unix://gk:s3cret@{own_redis.socket_path}?db=3"
    ep = Endpoint.from_url(url)
    assert ep is not None
    pipe = AutoPipeline(ep)
    try:
        assert await pipe.command("SET", "k", "v") == b"OK"
        assert await admin.get("k") is None  # db 0
        selected = Redis.from_url(url)
        assert await selected.get("k") == b"v"
        await selected.aclose()
        assert await pipe.command("ACL", "WHOAMI") == b"gk"
    finally:
        await pipe.aclose()
    wrong = AutoPipeline(
        Endpoint.from_url(f"unix://gk:wrong@{own_redis.socket_path}?db=3")  # type: ignore[arg-type]
    )
    try:
        with pytest.raises(StoreUnavailable, match="AUTH refused") as err:
            await wrong.command("PING")
        assert err.value.transient
    finally:
        await wrong.aclose()
        await admin.aclose()
