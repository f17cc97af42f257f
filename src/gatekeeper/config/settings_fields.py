"""The scalar settings: their names, types and ranges, shared by the YAML reader and the env reader.

One table, so `settings.server.grpc_port` in the file and `GATEKEEPER_SERVER_GRPC_PORT` in the
environment are checked by the same rule and fail with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from gatekeeper.config.errors import did_you_mean
from gatekeeper.config.fields import int_range
from gatekeeper.settings import FailClosedAnswer, FailureMode, GrpcTransport, Secret

__all__ = ["LIST_FIELDS", "SECTIONS", "TOP_LEVEL", "FieldSpec", "env_name"]

_INT = re.compile(r"[+-]?[0-9]+")
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_HEADER = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one scalar setting is read. `convert` raises ValueError with the full reason."""

    kind: Literal["int", "str", "enum", "secret", "bool"]
    lo: int | None = None
    hi: int | None = None
    pattern: re.Pattern[str] | None = None
    what: str = "a string"
    choices: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()  # secret URLs: allowed schemes (empty = any non-empty value)

    def convert(self, value: object, shown: str, *, from_env: bool) -> object:
        """The typed value; `shown` is how `value` reads in a message (never used for secrets).

        Raises ValueError: the value has the wrong type or is out of range.
        """
        if self.kind == "int":
            if from_env and isinstance(value, str) and _INT.fullmatch(value.strip()):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not self._in_range(value):
                raise ValueError(f"expected {int_range(self.lo, self.hi)}, got {shown}")
            return value
        if self.kind == "bool":
            if from_env and isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
                value = _BOOL_WORDS[value.strip().lower()]
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {shown}")
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected {self.what}, got {shown}")
        if self.kind == "enum":
            if value not in self.choices:
                hint = did_you_mean(value, self.choices)
                raise ValueError(f"expected one of {', '.join(self.choices)}, got {shown}{hint}")
            return value
        if self.kind == "secret":
            if not value or (self.schemes and urlsplit(value).scheme not in self.schemes):
                raise ValueError(f"expected {self.what} (value not shown)")
            return Secret(value)
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise ValueError(f"expected {self.what}, got {shown}")
        return value

    def _in_range(self, value: int) -> bool:
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)


_PORT = FieldSpec("int", lo=1, hi=65535)
_POSITIVE = FieldSpec("int", lo=1)

SECTIONS: Mapping[str, Mapping[str, FieldSpec]] = {
    "server": {
        "host": FieldSpec("str", what="a host name or address"),
        "grpc_port": _PORT,
        "authz_http_port": _PORT,
        "http_port": _PORT,
        "workers": _POSITIVE,
        "grpc_transport": FieldSpec("enum", choices=tuple(t.value for t in GrpcTransport)),
    },
    "redis": {
        "url": FieldSpec(
            "secret",
            what="a redis://, rediss:// or unix:// URL",
            schemes=("redis", "rediss", "unix"),
        ),
        "partitions": FieldSpec("int", lo=1, hi=16384),
        "key_prefix": FieldSpec(
            "str",
            pattern=re.compile(r"[A-Za-z0-9_.-]+"),
            what="a key prefix of letters, digits, '_', '.', '-'",
        ),
        "idempotency_ttl_s": _POSITIVE,
        "reservation_ttl_s": _POSITIVE,
        "period_grace_s": FieldSpec("int", lo=0),
        "max_connections": _POSITIVE,
        "pool_timeout_s": _POSITIVE,
        "autopipeline": FieldSpec("bool"),
        "cluster": FieldSpec("bool"),
        "wait_replicas": FieldSpec("int", lo=0, hi=16),
        "wait_timeout_ms": FieldSpec("int", lo=1, hi=10_000),
    },
    "billing": {"dsn": FieldSpec("secret", what="a database DSN")},
    "alerts": {"digest_window_s": _POSITIVE, "allow_private_customer_webhooks": FieldSpec("bool")},
    "admin": {"token": FieldSpec("secret", what="a non-empty token")},
    "directory": {"cache_size": FieldSpec("int", lo=1, hi=10_000_000)},
    "forwarder": {
        "url": FieldSpec("str", pattern=re.compile(r"https?://\S+"), what="an http(s) URL"),
        "source": FieldSpec("str", pattern=re.compile(r"\S+"), what="a URI-reference"),
        "batch_size": _POSITIVE,
        "max_wait_ms": _POSITIVE,
        "max_attempts": _POSITIVE,
        "timeout_s": _POSITIVE,
        "auth_token": FieldSpec("secret", what="a non-empty token"),
    },
    "net": {
        "max_header_bytes": FieldSpec("int", lo=1024, hi=16_777_216),
        "max_header_count": FieldSpec("int", lo=16, hi=100_000),
        "max_body_bytes": FieldSpec("int", lo=1024, hi=2_147_483_647),
        "max_decompressed_bytes": FieldSpec("int", lo=1024, hi=2_147_483_647),
        "max_concurrent_streams": FieldSpec("int", lo=1, hi=2_147_483_647),
        "max_pipelined_requests": FieldSpec("int", lo=1, hi=1_000_000),
        "max_buffered_bytes": FieldSpec("int", lo=65_535, hi=2_147_483_647),
        "max_resets_per_s": _POSITIVE,
        "max_pings_per_s": _POSITIVE,
        "max_settings_per_s": _POSITIVE,
        "idle_timeout_s": _POSITIVE,
        "header_timeout_s": _POSITIVE,
        "max_connections": _POSITIVE,
    },
    "edge": {
        "trusted_customer_header": FieldSpec(
            "str", pattern=_HEADER, what="a lower-case header name"
        ),
        "customer_metadata": FieldSpec(
            "str",
            pattern=re.compile(r"[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+"),
            what="'<filter namespace>:<field>'",
        ),
        "charge_5xx": FieldSpec("bool"),
        "upgrade_url": FieldSpec("str", pattern=re.compile(r"https?://\S+"), what="an http(s) URL"),
        "fail_closed_answer": FieldSpec("enum", choices=tuple(a.value for a in FailClosedAnswer)),
    },
}

TOP_LEVEL: Mapping[str, FieldSpec] = {
    "failure_mode": FieldSpec("enum", choices=tuple(mode.value for mode in FailureMode)),
    "ratelimit_config": FieldSpec("str", what="a file or directory path"),
    "ratelimit_metric_series": FieldSpec("int", lo=1, hi=1_000_000),
    "data_dir": FieldSpec("str", pattern=re.compile(r".+"), what="a directory path"),
}

LIST_FIELDS: Mapping[str, tuple[str, ...]] = {"alerts": ("webhooks",)}  # not settable by env


def env_name(section: str | None, name: str) -> str:
    """The variable for a setting: GATEKEEPER_SERVER_GRPC_PORT, GATEKEEPER_FAILURE_MODE."""
    if section is None:
        return f"GATEKEEPER_{name.upper()}"
    return f"GATEKEEPER_{section.upper()}_{name.upper()}"
