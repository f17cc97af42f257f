"""Load a policy file and its settings: `parse_config` (text) and `load_config` (a file).

Both raise `ConfigError` listing every problem found (never just the first). The environment is
passed in explicitly; nothing here reads `os.environ`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gatekeeper.config.errors import ConfigError, ConfigIssue, Issues
from gatekeeper.config.fields import describe
from gatekeeper.config.policy_parser import parse_policy
from gatekeeper.config.settings_parser import parse_settings
from gatekeeper.config.yamlsrc import YMap, load_yaml
from gatekeeper.model import Policy
from gatekeeper.settings import Settings

__all__ = [
    "DEMO_SOURCE",
    "LoadedConfig",
    "collector_paused",
    "load_config",
    "load_or_report",
    "parse_config",
]

DEMO_SOURCE = "<gatekeeper/data/demo.yaml>"


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    policy: Policy
    settings: Settings
    source: str  # file path, or DEMO_SOURCE for the packaged demo policy
    root: YMap | None = None  # the parsed document, for composing run-time changes (admin API)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a document is parsed (or a parsed one is walked:
    the policy file's customers seeded into the directory at start).

    Parsing allocates millions of small acyclic objects for a large file; each allocation burst
    triggered a full generation scan over the growing tree (two thirds of the time of a file
    listing 100,000 customers). Reference counting still frees everything; the collector runs
    again afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_config(
    text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Parse a policy file's text; `env` overrides its settings (GATEKEEPER_<SECTION>_<FIELD>).

    Raises ConfigError with every issue found: YAML syntax (then only that one), unknown keys,
    wrong types, values out of range, and cross-references that do not resolve.
    """
    with collector_paused():
        return _parse(text, source, env)


def _parse(text: str, source: str, env: Mapping[str, str] | None) -> LoadedConfig:
    issues = Issues(source)
    root = load_yaml(text, source=source, issues=issues)
    if not isinstance(root, YMap):
        got = "an empty document" if root is None else describe(root)
        line = None if root is None else root.line
        message = f"expected a mapping with version, currency, features, ...; got {got}"
        raise ConfigError([ConfigIssue("", line, message, source)], source=source)
    policy = parse_policy(root, issues)
    settings = parse_settings(root.get("settings"), env or {}, issues)
    issues.raise_if_any()
    return LoadedConfig(policy=policy, settings=settings, source=source, root=root)


def load_config(path: str | Path | None, *, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read and parse a policy file; None reads the demo policy shipped in the package.

    Raises ConfigError when the file cannot be read (missing, unreadable, not UTF-8) or is invalid.
    """
    if path is None:
        text = resources.files("gatekeeper").joinpath("data", "demo.yaml").read_text("utf-8")
        return parse_config(text, source=DEMO_SOURCE, env=env)
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            [ConfigIssue("", None, f"cannot read file: {reason}", source)], source=source
        ) from None
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text (byte {exc.start})"
        raise ConfigError([ConfigIssue("", None, message, source)], source=source) from None
    return parse_config(text, source=source, env=env)


def load_or_report(
    path: str | None, env: Mapping[str, str], report: Callable[[str], None]
) -> LoadedConfig | None:
    """For commands: `path`, else env GATEKEEPER_CONFIG, else the demo policy.

    Each issue of an invalid config goes to `report` (one line each) and None is returned.
    """
    try:
        return load_config(path or env.get("GATEKEEPER_CONFIG") or None, env=env)
    except ConfigError as exc:
        for issue in exc.issues:
            report(str(issue))
        return None
