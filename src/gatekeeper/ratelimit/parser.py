"""One envoyproxy/ratelimit YAML document → its domain and descriptor tree, with every issue.

Checks follow upstream `src/config/config_impl.go` (see `gatekeeper.ratelimit.config`). Scalars
given where upstream's yaml.v2 expects a string keep their source text (`value: 200` is "200").
"""

from __future__ import annotations

from typing import TypeGuard

from gatekeeper.config.errors import ConfigError, Issues, did_you_mean
from gatekeeper.config.yamlsrc import Node, Scalar, YMap, YSeq, item_path, key_path, load_yaml
from gatekeeper.ratelimit.model import DescriptorConfig, RateLimit, Unit

__all__ = ["final_key", "parse_document"]

_KNOWN_KEYS = frozenset(
    {
        "domain",
        "key",
        "value",
        "descriptors",
        "rate_limit",
        "unit",
        "requests_per_unit",
        "unlimited",
        "shadow_mode",
        "quota_mode",
        "name",
        "replaces",
        "detailed_metric",
        "value_to_metric",
        "share_threshold",
        "metadata",
    }
)
_UINT32_MAX = 2**32 - 1


def _given(node: Node | None) -> TypeGuard[Node]:
    """False when missing or present with no value (`key:`): both mean the default (yaml.v2)."""
    return node is not None and not (isinstance(node, Scalar) and node.value is None)


def _line(node: Node | None, parent: YMap) -> int:
    return parent.line if node is None else node.line


def final_key(d: DescriptorConfig) -> str:
    return f"{d.key}_{d.value}" if d.value else d.key


def parse_document(
    source: str, text: str, issues: Issues
) -> tuple[str, int, tuple[DescriptorConfig, ...]] | None:
    try:
        root = load_yaml(text, source=source, issues=issues)
    except ConfigError as exc:
        for issue in exc.issues:
            issues.add(issue.path, issue.line, issue.message)
        return None
    return _FileParser(source, issues).parse(root)


class _FileParser:
    def __init__(self, source: str, issues: Issues) -> None:
        self._source = source
        self._issues = issues

    def _add(self, path: str, line: int | None, message: str) -> None:
        self._issues.add(path, line, message, source=self._source)

    def parse(self, root: Node | None) -> tuple[str, int, tuple[DescriptorConfig, ...]] | None:
        if root is None:
            self._add("domain", None, "config file cannot have empty domain")
            return None
        if not isinstance(root, YMap):
            self._add(
                "", root.line, "a ratelimit config is a mapping with 'domain' and 'descriptors'"
            )
            return None
        self._check_keys(root, "")
        domain = self._text(root.get("domain"), "domain")
        line = root.entries["domain"].key_line if "domain" in root else root.line
        if not domain:
            self._add("domain", line, "config file cannot have empty domain")
        descriptors = self._descriptors(root.get("descriptors"), "descriptors", domain or "")
        return (domain, line, descriptors) if domain else None

    def _check_keys(self, node: YMap, path: str) -> None:
        for entry in node:
            if entry.key not in _KNOWN_KEYS:
                hint = did_you_mean(entry.key, _KNOWN_KEYS)
                self._add(
                    key_path(path, entry.key), entry.key_line, f"unknown key '{entry.key}'{hint}"
                )

    def _descriptors(
        self, node: Node | None, path: str, parent: str
    ) -> tuple[DescriptorConfig, ...]:
        if not _given(node):
            return ()
        if not isinstance(node, YSeq):
            self._add(path, node.line, "must be a list of descriptors")
            return ()
        result: list[DescriptorConfig] = []
        seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(node.items):
            here = item_path(path, index)
            if not isinstance(item, YMap):
                self._add(here, item.line, "must be a mapping (key, value, rate_limit, ...)")
                continue
            descriptor = self._descriptor(item, here, parent)
            if descriptor is None:
                continue
            composite = (descriptor.key, descriptor.value)
            if composite in seen:
                full = f"{parent}.{final_key(descriptor)}"
                self._add(
                    here,
                    item.line,
                    f"duplicate descriptor composite key '{full}' "
                    f"(first at line {seen[composite]})",
                )
                continue
            seen[composite] = item.line
            result.append(descriptor)
        return tuple(result)

    def _descriptor(self, node: YMap, path: str, parent: str) -> DescriptorConfig | None:
        self._check_keys(node, path)
        key = self._text(node.get("key"), key_path(path, "key"))
        value = self._text(node.get("value"), key_path(path, "value"))
        share = self._flag(node, path, "share_threshold")
        metadata = node.get("metadata")
        if _given(metadata) and not isinstance(metadata, YMap):
            self._add(key_path(path, "metadata"), _line(metadata, node), "must be a mapping")
        if share and "*" not in value:
            self._add(
                key_path(path, "share_threshold"),
                node.line,
                "share_threshold can only be used with wildcard values (containing '*')",
            )
        if not key:
            self._add(key_path(path, "key"), node.line, "descriptor has empty key")
        full = f"{parent}.{key}_{value}" if value else f"{parent}.{key}"
        limit = self._rate_limit(node, path)
        children = self._descriptors(node.get("descriptors"), key_path(path, "descriptors"), full)
        if not key:
            return None
        return DescriptorConfig(
            key=key,
            value=value,
            rate_limit=limit,
            descriptors=children,
            value_to_metric=self._flag(node, path, "value_to_metric"),
            share_threshold=share,
            source=f"{self._source}:{node.line}",
        )

    def _rate_limit(self, descriptor: YMap, path: str) -> RateLimit | None:
        node = descriptor.get("rate_limit")
        here = key_path(path, "rate_limit")
        if not _given(node):
            return None
        if not isinstance(node, YMap):
            self._add(here, node.line, "must be a mapping (unit, requests_per_unit, ...)")
            return None
        self._check_keys(node, here)
        unlimited = self._flag(node, here, "unlimited")
        unit_text = self._text(node.get("unit"), key_path(here, "unit"))
        unit: Unit | None = None
        if unlimited:
            if unit_text:
                self._add(
                    key_path(here, "unit"),
                    node.line,
                    "should not specify rate limit unit when unlimited",
                )
        elif unit_text.lower() in Unit.__members__.values():
            unit = Unit(unit_text.lower())
        else:
            hint = did_you_mean(unit_text.lower(), [u.value for u in Unit])
            self._add(
                key_path(here, "unit"),
                node.line,
                f"invalid rate limit unit "
                f"'{unit_text}' (second, minute, hour, day, week, month, year){hint}",
            )
        name = self._text(node.get("name"), key_path(here, "name"))
        return RateLimit(
            requests_per_unit=self._count(node.get("requests_per_unit"), here),
            unit=unit,
            unlimited=unlimited,
            name=name,
            replaces=self._replaces(node.get("replaces"), key_path(here, "replaces"), name),
            shadow_mode=self._flag(descriptor, path, "shadow_mode"),
            quota_mode=self._flag(descriptor, path, "quota_mode"),
            detailed_metric=self._flag(descriptor, path, "detailed_metric"),
        )

    def _replaces(self, node: Node | None, path: str, own_name: str) -> tuple[str, ...]:
        if not _given(node):
            return ()
        if not isinstance(node, YSeq):
            self._add(path, node.line, "must be a list of {name: ...}")
            return ()
        names: list[str] = []
        for index, item in enumerate(node.items):
            here = item_path(path, index)
            if not isinstance(item, YMap):
                self._add(here, item.line, "must be a mapping {name: ...}")
                continue
            self._check_keys(item, here)
            name = self._text(item.get("name"), key_path(here, "name"))
            if not name:
                self._add(here, item.line, "should not have an empty replaces entry")
            elif name == own_name:
                self._add(here, item.line, "replaces should not contain name of same descriptor")
            else:
                names.append(name)
        return tuple(names)

    def _text(self, node: Node | None, path: str) -> str:
        """A scalar as text; numbers and booleans as written (`value: 200` is "200")."""
        if node is None:
            return ""
        if not isinstance(node, Scalar):
            self._add(path, node.line, "must be a string")
            return ""
        if node.value is None:
            return ""
        return node.value if isinstance(node.value, str) else node.raw

    def _flag(self, node: YMap, path: str, key: str) -> bool:
        value = node.get(key)
        if not _given(value):
            return False
        if isinstance(value, Scalar) and isinstance(value.value, bool):
            return value.value
        self._add(key_path(path, key), value.line, "must be true or false")
        return False

    def _count(self, node: Node | None, path: str) -> int:
        here = key_path(path, "requests_per_unit")
        if not _given(node):
            return 0
        value = node.value if isinstance(node, Scalar) else None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _UINT32_MAX:
            return value
        self._add(here, node.line, f"must be an integer from 0 to {_UINT32_MAX}")
        return 0
