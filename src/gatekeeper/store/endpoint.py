"""Where the auto-pipelining path connects, read exactly as redis-py reads the same URL.

The URL goes through redis-py's own parser and connection defaults (socket timeouts, db,
username/password, and for rediss:// its TLS context: `ssl_ca_certs`, `ssl_certfile`,
`ssl_keyfile`, `ssl_cert_reqs`, `ssl_check_hostname` ... as URL query parameters), so both
paths talk to the same server the same way.
"""

from __future__ import annotations

import ssl
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
    tls: ssl.SSLContext | None = field(default=None, compare=False, repr=False)  # rediss://
    server_hostname: str | None = None  # checked against the certificate (TLS only)

    @property
    def where(self) -> str:
        """For messages: the socket path or host:port (never credentials)."""
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"

    @classmethod
    def from_pool(cls, pool: ConnectionPool) -> Endpoint | None:
        """The endpoint of a redis-py pool (TLS with redis-py's own context for rediss://);
        None for a connection it cannot reproduce (a credential provider, a custom class)."""
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
        tls, hostname = None, None
        if isinstance(conn, SSLConnection):
            tls = conn.ssl_context.get()
            hostname = str(conn.host) if tls.check_hostname else None
        return cls(
            host=str(conn.host),
            port=int(conn.port),
            db=int(conn.db),
            username=username,
            password=password,
            timeout_s=timeout,
            connect_timeout_s=connect_timeout,
            tls=tls,
            server_hostname=hostname,
        )

    @classmethod
    def from_url(cls, url: str) -> Endpoint | None:
        """redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix://path?db=N."""
        return cls.from_pool(ConnectionPool.from_url(url))

    @classmethod
    def from_client(cls, client: Redis) -> Endpoint | None:
        return cls.from_pool(client.connection_pool)
