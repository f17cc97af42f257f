"""Where the auto-pipelining path connects, read exactly as redis-py reads the same URL.

The URL goes through redis-py's own parser and connection defaults (socket timeouts, db,
username/password), so both paths talk to the same server the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

__all__ = ["Endpoint"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host:port
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float | None = 5.0  # per command (redis-py's socket_timeout)
    connect_timeout_s: float | None = 5.0

    @property
    def where(self) -> str:
        """For messages: the socket path or host:port (never credentials)."""
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"

    @classmethod
    def from_pool(cls, pool: ConnectionPool) -> Endpoint | None:
        """The endpoint of a redis-py pool; None when it speaks TLS (rediss://: not supported)."""
        if issubclass(pool.connection_class, SSLConnection):
            return None
        conn = pool.connection_class(**pool.connection_kwargs)
        username, password = conn.username, conn.password
        if conn.credential_provider is not None:  # pragma: no cover - not configurable by URL
            return None
        timeout = conn.socket_timeout
        connect_timeout = conn.socket_connect_timeout
        if isinstance(conn, UnixDomainSocketConnection):
            return cls(
                path=conn.path,
                db=int(conn.db),
                username=username,
                password=password,
                timeout_s=timeout,
                connect_timeout_s=connect_timeout,
            )
        if not isinstance(conn, Connection):  # pragma: no cover - a custom connection class
            return None
        return cls(
            host=str(conn.host),
            port=int(conn.port),
            db=int(conn.db),
            username=username,
            password=password,
            timeout_s=timeout,
            connect_timeout_s=connect_timeout,
        )

    @classmethod
    def from_url(cls, url: str) -> Endpoint | None:
        """redis://[[user]:password@]host[:port][/db], unix://path?db=N; None for rediss://."""
        return cls.from_pool(ConnectionPool.from_url(url))

    @classmethod
    def from_client(cls, client: Redis) -> Endpoint | None:
        return cls.from_pool(client.connection_pool)
