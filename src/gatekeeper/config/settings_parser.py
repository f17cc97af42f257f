"""The `settings:` section plus environment overrides, into `gatekeeper.settings.Settings`.

Nothing here raises: problems are recorded in the `Issues` collector.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from gatekeeper.config.env import Assigned, SettingKey, apply_env
from gatekeeper.config.errors import Issues, did_you_mean
from gatekeeper.config.fields import (
    Section,
    describe,
    expect_map,
    expect_seq,
    expect_str,
    section_map,
    section_seq,
)
from gatekeeper.config.settings_fields import LIST_FIELDS, SECTIONS, TOP_LEVEL, FieldSpec
from gatekeeper.config.yamlsrc import Node, Scalar, item_path, key_path
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
    Secret,
    ServerSettings,
    Settings,
    WebhookSettings,
)

__all__ = ["ALERT_KINDS", "parse_settings"]

_D = TypeVar("_D", ServerSettings, EdgeSettings)

ALERT_KINDS = (
    "threshold",
    "overage",
    "forecast",
    "anomaly",
    "spend_cap",
    "blocked",
    "resumed",
)  # AlertKind's values (events.py; a test keeps them equal)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PORTS = ("grpc_port", "authz_http_port", "http_port")
_HOST_PORT = re.compile(r"[A-Za-z0-9_.-]+:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}")


def parse_settings(node: Node | None, env: Mapping[str, str], issues: Issues) -> Settings:
    """Settings from the file's `settings:` section (may be absent), then `env` over it."""
    values: dict[SettingKey, Assigned] = {}
    webhooks: tuple[WebhookSettings, ...] = ()
    root = section_map(node, "settings", issues)
    if root is not None:
        Section(root, "settings", issues, allowed=(*SECTIONS, *TOP_LEVEL))
        for entry in root:
            path = key_path("settings", entry.key)
            if entry.key in TOP_LEVEL:
                _read(entry.value, path, TOP_LEVEL[entry.key], (None, entry.key), values, issues)
            elif entry.key in SECTIONS:
                webhooks = _section(entry.key, entry.value, path, values, issues) or webhooks
    secrets = {hook.secret_env for hook in webhooks if hook.secret_env}
    apply_env(values, env, issues, ignore=secrets)
    _check_ports(values, issues)
    _check_redis_seeds(values, issues)
    _check_redis_wait(values, issues)
    return _build(values, webhooks)


def _section(
    name: str, node: Node, path: str, values: dict[SettingKey, Assigned], issues: Issues
) -> tuple[WebhookSettings, ...] | None:
    mapping = section_map(node, path, issues)
    if mapping is None:
        return None
    fields = SECTIONS[name]
    Section(mapping, path, issues, allowed=(*fields, *LIST_FIELDS.get(name, ())))
    webhooks = None
    for entry in mapping:
        if entry.key in fields:
            _read(
                entry.value,
                key_path(path, entry.key),
                fields[entry.key],
                (name, entry.key),
                values,
                issues,
            )
        elif entry.key == "webhooks":
            webhooks = _webhooks(entry.value, key_path(path, entry.key), issues)
    return webhooks


def _read(
    node: Node,
    path: str,
    spec: FieldSpec,
    key: SettingKey,
    values: dict[SettingKey, Assigned],
    issues: Issues,
) -> None:
    if isinstance(node, Scalar) and node.value is None:
        return  # `url: ~` = unset, the default
    raw: object = node.value if isinstance(node, Scalar) else node
    try:
        value = spec.convert(raw, describe(node), from_env=False)
    except ValueError as exc:
        issues.add(path, node.line, str(exc))
        return
    values[key] = Assigned(value, path, node.line, None)


def _webhooks(node: Node, path: str, issues: Issues) -> tuple[WebhookSettings, ...]:
    hooks: list[WebhookSettings] = []
    seq = section_seq(node, path, issues)
    for index, item in enumerate(seq.items if seq else ()):
        at = item_path(path, index)
        mapping = expect_map(item, at, issues, what="a webhook {url, secret_env, kinds}")
        if mapping is None:
            continue
        sec = Section(
            mapping, at, issues, allowed=("url", "secret_env", "kinds"), required=("url",)
        )
        url = sec.text("url", "")
        parts = urlsplit(url)
        if sec.ok("url") and (parts.scheme not in ("http", "https") or not parts.netloc):
            sec.error("url", f"expected an http:// or https:// URL, got '{url}'")
        secret_env = sec.text(
            "secret_env", None, pattern=_ENV_NAME, what="an environment variable name"
        )
        kinds = _kinds(sec)
        if not sec.bad:
            hooks.append(WebhookSettings(url=url, secret_env=secret_env, kinds=kinds))
    return tuple(hooks)


def _kinds(sec: Section) -> tuple[str, ...]:
    node = sec.get("kinds")
    if node is None:
        return ()
    seq = expect_seq(node, sec.path_of("kinds"), sec.issues, what="a list of alert kinds")
    if seq is None:
        sec.bad.add("kinds")
        return ()
    kinds: list[str] = []
    for index, item in enumerate(seq.items):
        at = item_path(sec.path_of("kinds"), index)
        kind = expect_str(item, at, sec.issues, what="an alert kind")
        if kind is not None and kind not in ALERT_KINDS:
            hint = did_you_mean(kind, ALERT_KINDS)
            sec.issues.add(
                at, item.line, f"expected one of {', '.join(ALERT_KINDS)}, got '{kind}'{hint}"
            )
            kind = None
        if kind is None:
            sec.bad.add("kinds")
        elif kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


def _check_ports(values: dict[SettingKey, Assigned], issues: Issues) -> None:
    """Two servers on one port fail at bind time; say so now, at the setting that was changed."""
    defaults = ServerSettings()
    seen: list[tuple[str, object, Assigned | None]] = []
    for name in _PORTS:
        assigned = values.get(("server", name))
        port = assigned.value if assigned else getattr(defaults, name)
        for other, other_port, other_assigned in seen:
            blame, peer = (assigned, other) if assigned is not None else (other_assigned, name)
            if port == other_port and blame is not None:
                message = f"port {port} is also used by server.{peer}"
                issues.add(blame.path, blame.line, message, source=blame.source)
        seen.append((name, port, assigned))


def _check_redis_seeds(values: dict[SettingKey, Assigned], issues: Issues) -> None:
    """Several comma-separated seed nodes only with redis.cluster; a Cluster's seeds are
    redis:// or rediss:// (TLS), all the same scheme, or host:port (never a unix socket)."""
    url = values.get(("redis", "url"))
    cluster = values.get(("redis", "cluster"))
    if url is None or not isinstance(url.value, Secret):
        if cluster is not None and cluster.value is True:
            message = (
                "a Redis Cluster needs its seed nodes in settings.redis.url (GATEKEEPER_REDIS_URL)"
            )
            issues.add(cluster.path, cluster.line, message, source=cluster.source)
        return
    seeds = url.value.value.split(",")
    if cluster is None or cluster.value is not True:
        if len(seeds) > 1:
            issues.add(
                url.path,
                url.line,
                "several comma-separated Redis URLs are seed nodes of a Redis Cluster: set "
                "settings.redis.cluster (GATEKEEPER_REDIS_CLUSTER) to true, or name one server "
                "(value not shown)",
                source=url.source,
            )
        return
    schemes = {urlsplit(seed.strip()).scheme for seed in seeds if "://" in seed}
    for seed in seeds:
        seed = seed.strip()
        ok = (
            urlsplit(seed).scheme in ("redis", "rediss") and len(schemes) == 1
            if "://" in seed
            else _HOST_PORT.fullmatch(seed)
        )
        if not ok:
            issues.add(
                url.path,
                url.line,
                "with settings.redis.cluster every comma-separated seed must be "
                "redis://[user:password@]host:port, rediss://... (TLS; then every seed) or "
                "host:port (value not shown)",
                source=url.source,
            )
            return


def _check_redis_wait(values: dict[SettingKey, Assigned], issues: Issues) -> None:
    """WAIT goes right behind a decision's call on its connection: the auto-pipeline's."""
    wait = values.get(("redis", "wait_replicas"))
    auto = values.get(("redis", "autopipeline"))
    if wait is not None and wait.value != 0 and auto is not None and auto.value is False:
        message = (
            "settings.redis.wait_replicas needs settings.redis.autopipeline "
            "(GATEKEEPER_REDIS_AUTOPIPELINE) on: WAIT must follow a decision on its connection"
        )
        issues.add(wait.path, wait.line, message, source=wait.source)


def _build(values: dict[SettingKey, Assigned], webhooks: tuple[WebhookSettings, ...]) -> Settings:
    def fields(section: str | None) -> dict[str, Any]:
        return {name: a.value for (sec, name), a in values.items() if sec == section}

    top = fields(None)
    mode = top.get("failure_mode", FailureMode.CLOSED.value)
    ratelimit = top.get("ratelimit_config")
    return Settings(
        server=_with_enum(ServerSettings(), fields("server"), "grpc_transport", GrpcTransport),
        failure_mode=FailureMode(str(mode)),
        redis=dataclasses.replace(RedisSettings(), **fields("redis")),
        billing=dataclasses.replace(BillingSettings(), **fields("billing")),
        alerts=dataclasses.replace(AlertSettings(webhooks=webhooks), **fields("alerts")),
        ratelimit_config=None if ratelimit is None else str(ratelimit),
        ratelimit_metric_series=int(
            top.get("ratelimit_metric_series", Settings().ratelimit_metric_series)
        ),
        edge=_with_enum(EdgeSettings(), fields("edge"), "fail_closed_answer", FailClosedAnswer),
        admin=dataclasses.replace(AdminSettings(), **fields("admin")),
        directory=dataclasses.replace(DirectorySettings(), **fields("directory")),
        forwarder=dataclasses.replace(ForwarderSection(), **fields("forwarder")),
        net=dataclasses.replace(NetLimits(), **fields("net")),
        data_dir=str(top.get("data_dir", Settings().data_dir)),
    )


def _with_enum(default: _D, values: dict[str, Any], field: str, kind: type[StrEnum]) -> _D:
    """`default` with `values` set, the StrEnum field `field` made from its (checked) string."""
    if field in values:
        values = {**values, field: kind(str(values[field]))}
    return dataclasses.replace(default, **values)
