"""Settings from the environment: GATEKEEPER_<SECTION>_<FIELD> and GATEKEEPER_<FIELD> (dict env)."""

from __future__ import annotations

import dataclasses

import pytest

from gatekeeper.config import ConfigError, parse_config
from gatekeeper.config.settings_fields import LIST_FIELDS, SECTIONS, TOP_LEVEL
from gatekeeper.settings import (
    AdminSettings,
    AlertSettings,
    BillingSettings,
    DirectorySettings,
    EdgeSettings,
    FailClosedAnswer,
    FailureMode,
    ForwarderSection,
    GrpcTransport,
    NetLimits,
    RedisSettings,
    ServerSettings,
    Settings,
)

BASE = """\
version: 1
currency: USD
settings:
  server: {grpc_port: 9191, host: 0.0.0.0}
  redis: {partitions: 16}
  alerts:
    webhooks: [{url: "https://hooks.example.com/gk", secret_env: GATEKEEPER_ALERTS_SECRET}]
"""


def _issues(text: str, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="env.yaml", env=env)
    return [str(issue) for issue in caught.value.issues]


def test_valid_overrides_apply_and_win_over_the_file() -> None:
    env = {
        "GATEKEEPER_SERVER_GRPC_PORT": "10191",
        "GATEKEEPER_SERVER_WORKERS": "4",
        "GATEKEEPER_REDIS_PARTITIONS": "64",
        "GATEKEEPER_REDIS_URL": "redis://:s3cret@redis:6379/0",
        "GATEKEEPER_REDIS_KEY_PREFIX": "gk-test",
        "GATEKEEPER_BILLING_DSN": "postgresql://gk:pw@db/gk",
        "GATEKEEPER_ALERTS_DIGEST_WINDOW_S": "300",
        "GATEKEEPER_FAILURE_MODE": "open",
        "GATEKEEPER_RATELIMIT_CONFIG": "/etc/ratelimit/config",
        "GATEKEEPER_SERVER_GRPC_TRANSPORT": "grpcio",
    }
    settings = parse_config(BASE, env=env).settings
    assert settings.server.grpc_port == 10191 and settings.server.workers == 4
    assert settings.server.grpc_transport is GrpcTransport.GRPCIO
    assert settings.server.host == "0.0.0.0"  # from the file, untouched
    assert settings.redis.partitions == 64 and settings.redis.key_prefix == "gk-test"
    assert (
        settings.redis.url is not None
        and settings.redis.url.value == "redis://:s3cret@redis:6379/0"
    )
    assert "s3cret" not in repr(settings)
    assert settings.billing.dsn is not None and settings.billing.dsn.value.startswith("postgresql:")
    assert settings.alerts.digest_window_s == 300
    assert settings.failure_mode is FailureMode.OPEN
    assert settings.ratelimit_config == "/etc/ratelimit/config"


def test_unrelated_and_secret_variables_are_ignored() -> None:
    env = {
        "GATEKEEPER_CONFIG": "/etc/gatekeeper.yaml",
        "GATEKEEPER_ALERTS_SECRET": "whsec_abc",  # named by a webhook's secret_env
        "GATEKEEPER_WEBHOOK_SECRET": "x",
        "PATH": "/usr/bin",
        "GATEKEEPER_SERVER_HTTP_PORT": "",  # empty = unset
    }
    settings = parse_config(BASE, env=env).settings
    assert settings.server.http_port == 8080


def test_bad_value_names_the_variable() -> None:
    assert _issues(BASE, {"GATEKEEPER_SERVER_GRPC_PORT": "abc"}) == [
        "environment: GATEKEEPER_SERVER_GRPC_PORT: expected an integer 1..65535, got 'abc'"
    ]
    (message,) = _issues(BASE, {"GATEKEEPER_FAILURE_MODE": "shut"})
    assert message.startswith("environment: GATEKEEPER_FAILURE_MODE: expected one of closed, open")
    (message,) = _issues(BASE, {"GATEKEEPER_SERVER_GRPC_TRANSPORT": "h2"})
    assert message.startswith(
        "environment: GATEKEEPER_SERVER_GRPC_TRANSPORT: expected one of lean, grpcio"
    )


def test_secret_values_are_never_echoed() -> None:
    (message,) = _issues(BASE, {"GATEKEEPER_REDIS_URL": "http://user:hunter2@cache"})
    assert "GATEKEEPER_REDIS_URL" in message and "hunter2" not in message


def test_unknown_field_under_a_section_prefix() -> None:
    assert _issues(BASE, {"GATEKEEPER_SERVER_GRPC_PRT": "1"}) == [
        "environment: GATEKEEPER_SERVER_GRPC_PRT: unknown setting; "
        "did you mean GATEKEEPER_SERVER_GRPC_PORT?"
    ]
    (message,) = _issues(BASE, {"GATEKEEPER_BILLING_ZZZZZZ": "1"})
    assert message == "environment: GATEKEEPER_BILLING_ZZZZZZ: unknown setting"
    (message,) = _issues(BASE, {"GATEKEEPER_ALERTS_WEBHOOKS": "[]"})
    assert "lists cannot be set by environment" in message


def test_env_and_file_errors_are_reported_together() -> None:
    text = BASE.replace("partitions: 16", "partitions: 0")
    issues = _issues(text, {"GATEKEEPER_SERVER_GRPC_PORT": "99999", "GATEKEEPER_REDIS_URLL": "x"})
    assert issues == [
        "env.yaml:5: settings.redis.partitions: expected an integer 1..16384, got 0",
        "environment: GATEKEEPER_REDIS_URLL: unknown setting; did you mean GATEKEEPER_REDIS_URL?",
        "environment: GATEKEEPER_SERVER_GRPC_PORT: expected an integer 1..65535, got '99999'",
    ]


def test_env_fixes_a_port_clash_or_causes_one() -> None:
    clash = BASE.replace("grpc_port: 9191", "grpc_port: 8080")
    assert parse_config(clash, env={"GATEKEEPER_SERVER_HTTP_PORT": "8081"}).settings
    (message,) = _issues(BASE, {"GATEKEEPER_SERVER_HTTP_PORT": "9191"})
    assert message == (
        "environment: GATEKEEPER_SERVER_HTTP_PORT: port 9191 is also used by server.grpc_port"
    )


def test_every_settings_field_is_readable() -> None:
    """A field added to gatekeeper.settings must also be added to the settings table."""
    classes = {
        "server": ServerSettings,
        "redis": RedisSettings,
        "billing": BillingSettings,
        "alerts": AlertSettings,
        "edge": EdgeSettings,
        "admin": AdminSettings,
        "directory": DirectorySettings,
        "forwarder": ForwarderSection,
        "net": NetLimits,
    }
    for section, cls in classes.items():
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == set(SECTIONS[section]) | set(LIST_FIELDS.get(section, ())), section
    top = {f.name for f in dataclasses.fields(Settings)} - set(classes)
    assert top == set(TOP_LEVEL)


def test_edge_settings_from_env_and_file() -> None:
    env = {
        "GATEKEEPER_EDGE_CHARGE_5XX": "yes",
        "GATEKEEPER_EDGE_TRUSTED_CUSTOMER_HEADER": "x-customer-id",
        "GATEKEEPER_EDGE_FAIL_CLOSED_ANSWER": "503",
    }
    edge = parse_config(BASE, env=env).settings.edge
    assert (edge.charge_5xx, edge.trusted_customer_header, edge.fail_closed_answer) == (
        True,
        "x-customer-id",
        FailClosedAnswer.STATUS_503,
    )
    with pytest.raises(ConfigError) as err:
        parse_config(BASE, env={"GATEKEEPER_EDGE_CHARGE_5XX": "maybe"})
    assert "GATEKEEPER_EDGE_CHARGE_5XX: expected true or false, got 'maybe'" in str(err.value)


def test_pool_settings_from_env() -> None:
    env = {"GATEKEEPER_REDIS_MAX_CONNECTIONS": "8", "GATEKEEPER_REDIS_POOL_TIMEOUT_S": "2"}
    redis = parse_config(BASE, env=env).settings.redis
    assert (redis.max_connections, redis.pool_timeout_s) == (8, 2)


def test_cluster_takes_comma_separated_seeds() -> None:
    env = {
        "GATEKEEPER_REDIS_CLUSTER": "true",
        "GATEKEEPER_REDIS_URL": "redis://:pw@10.0.0.1:7000,redis://10.0.0.2:7000, 10.0.0.3:7001",
    }
    settings = parse_config(BASE, env=env).settings
    assert settings.redis.cluster is True
    assert settings.redis.url is not None and settings.redis.url.value.count(",") == 2
    assert parse_config(BASE, env={}).settings.redis.cluster is False


def test_several_seeds_without_cluster_name_the_field_and_hide_the_value() -> None:
    (message,) = _issues(BASE, {"GATEKEEPER_REDIS_URL": "redis://:hunter2@a:7000,b:7000"})
    assert message.startswith("environment: GATEKEEPER_REDIS_URL: ")
    assert "GATEKEEPER_REDIS_CLUSTER" in message and "hunter2" not in message


@pytest.mark.parametrize(
    "url", ["unix:///tmp/r.sock", "redis://a:7000,rediss://b:7000", "redis://a:1,b"]
)
def test_cluster_seeds_must_be_redis_host_port(url: str) -> None:
    text = BASE.replace("redis: {partitions: 16}", "redis: {partitions: 16, cluster: true}")
    (message,) = _issues(text, {"GATEKEEPER_REDIS_URL": url})
    assert message.startswith("environment: GATEKEEPER_REDIS_URL: ") and "seed" in message


@pytest.mark.parametrize("url", ["rediss://a:7000?ssl_cert_reqs=none,b:7000", "redis://a:1,b:2"])
def test_cluster_seeds_over_tls_or_not_are_accepted(url: str) -> None:
    text = BASE.replace("redis: {partitions: 16}", "redis: {partitions: 16, cluster: true}")
    settings = parse_config(text, env={"GATEKEEPER_REDIS_URL": url}).settings.redis
    assert settings.cluster and settings.url is not None


def test_cluster_without_seeds_is_an_error() -> None:
    (message,) = _issues(BASE, {"GATEKEEPER_REDIS_CLUSTER": "yes"})
    assert message.startswith("environment: GATEKEEPER_REDIS_CLUSTER: ") and "seed" in message


def test_net_limits_from_file_and_env() -> None:
    """settings.net: safe defaults, the file's values, the environment's over them."""
    assert parse_config(BASE, env={}).settings.net == NetLimits()
    text = BASE.replace(
        "settings:\n", "settings:\n  net:\n    max_header_count: 64\n    max_pings_per_s: 5\n"
    )
    env = {"GATEKEEPER_NET_MAX_PINGS_PER_S": "7", "GATEKEEPER_NET_IDLE_TIMEOUT_S": "30"}
    net = parse_config(text, env=env).settings.net
    assert (net.max_header_count, net.max_pings_per_s, net.idle_timeout_s) == (64, 7, 30)
    assert net.max_body_bytes == NetLimits().max_body_bytes
    assert _issues(BASE, {"GATEKEEPER_NET_MAX_HEADER_BYTES": "10"}) == [
        "environment: GATEKEEPER_NET_MAX_HEADER_BYTES: expected an integer 1024..16777216, got '10'"
    ]
