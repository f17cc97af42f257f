"""Load envoyproxy/ratelimit YAML (a file, or a directory of them) into a `RateLimitConfig`.

The format and its checks follow upstream `src/config/config_impl.go`: one `domain` per file;
descriptors with `key`, optional `value`, `rate_limit: {unit, requests_per_unit, unlimited,
name, replaces: [{name}]}`, nested `descriptors`, and the flags `shadow_mode`, `quota_mode`,
`detailed_metric`, `value_to_metric`, `share_threshold`, `metadata`. Errors upstream stops at
(empty domain, duplicate domain, empty key, duplicate key+value, bad unit, unit with
`unlimited`, empty or self `replaces`, `share_threshold` without a wildcard, unknown key) are
all collected here, each naming the file, line and YAML path, and raised as one `ConfigError`.

Like upstream, a key upstream knows is accepted anywhere (and ignored where it means nothing);
an unknown key is an error. `metadata` is validated as a mapping and otherwise not used (it
only feeds upstream's optional response dynamic metadata).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from gatekeeper.config.errors import ConfigError, ConfigIssue, Issues
from gatekeeper.config.yamlsrc import item_path
from gatekeeper.ratelimit.model import DescriptorConfig, DomainConfig, RateLimitConfig
from gatekeeper.ratelimit.parser import final_key, parse_document

__all__ = [
    "ENV_VAR",
    "config_files",
    "load_ratelimit_config",
    "parse_ratelimit_documents",
    "ratelimit_config_path",
]

ENV_VAR = "GATEKEEPER_RATELIMIT_CONFIG"


def config_files(path: str | os.PathLike[str]) -> list[Path]:
    """The file itself, or every `*.yaml`/`*.yml` under a directory (recursively, sorted).

    Names starting with `.` are skipped at every level, so a Kubernetes ConfigMap mount (whose
    `..data` directories duplicate the visible files) loads each file once.
    """
    root = Path(path)
    if not root.is_dir():
        return [root]
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(folder, f)
            for f in files
            if not f.startswith(".") and f.endswith((".yaml", ".yml"))
        )
    return sorted(found)


def load_ratelimit_config(
    path: str | os.PathLike[str], *, merge_domains: bool = False
) -> RateLimitConfig:
    """Read `path` (a file or a directory, see `config_files`) and parse it.

    `path` is what `GATEKEEPER_RATELIMIT_CONFIG` / `settings.ratelimit_config` names.
    `merge_domains` is upstream's MERGE_DOMAIN_CONFIG: files sharing a domain are merged
    instead of rejected. Raises ConfigError listing every problem of every file.
    """
    issues = Issues(str(path))
    documents: list[tuple[str, str]] = []
    files = config_files(path)
    if not files:
        issues.add("", None, "no *.yaml or *.yml files in the directory")
    for file in files:
        try:
            documents.append((str(file), file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            issues.add("", None, f"cannot read: {exc}", source=str(file))
    issues.raise_if_any()
    return parse_ratelimit_documents(documents, merge_domains=merge_domains)


def parse_ratelimit_documents(
    documents: Iterable[tuple[str, str]], *, merge_domains: bool = False
) -> RateLimitConfig:
    """Parse `(source name, YAML text)` pairs, one domain each.

    Raises ConfigError with every issue, file by file (in the order given), line by line.
    """
    found: list[ConfigIssue] = []
    domains: dict[str, DomainConfig] = {}
    top_keys: dict[str, dict[tuple[str, str], str]] = {}
    for source, text in documents:
        issues = Issues(source)
        parsed = parse_document(source, text, issues)
        if parsed is not None:
            name, line, descriptors = parsed
            previous = domains.get(name)
            if previous is not None and not merge_domains:
                first = previous.sources[0]
                issues.add("domain", line, f"duplicate domain '{name}' (first in {first})")
            else:
                _check_merged(name, descriptors, top_keys.setdefault(name, {}), issues)
                domains[name] = DomainConfig(
                    name,
                    descriptors if previous is None else previous.descriptors + descriptors,
                    (source,) if previous is None else (*previous.sources, source),
                )
        found.extend(issues.sorted())
    if found:
        raise ConfigError(found, source="ratelimit config")
    return RateLimitConfig(tuple(domains.values()))


def _check_merged(
    domain: str,
    descriptors: tuple[DescriptorConfig, ...],
    seen: dict[tuple[str, str], str],
    issues: Issues,
) -> None:
    """Top-level key+value pairs stay unique across the files merged into one domain."""
    for index, d in enumerate(descriptors):
        composite = (d.key, d.value)
        if composite in seen:
            line = d.source.rpartition(":")[2]
            message = (
                f"duplicate descriptor composite key '{domain}.{final_key(d)}' "
                f"(first at {seen[composite]})"
            )
            issues.add(item_path("descriptors", index), int(line) if line else None, message)
        seen.setdefault(composite, d.source)


def ratelimit_config_path(env: Mapping[str, str], configured: str | None = None) -> str | None:
    """`GATEKEEPER_RATELIMIT_CONFIG` from `env` when set (non-empty), else `configured`."""
    return env.get(ENV_VAR) or configured
