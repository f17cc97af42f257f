"""Configuration: the policy file (DESIGN.md §3) and process settings (§6), validated as a whole.

`load_config(path, env=...)` / `parse_config(text, env=...)` return a `LoadedConfig` or raise
`ConfigError` carrying every `ConfigIssue` found, each with its YAML path (or environment
variable), line and reason.
"""

from gatekeeper.config.errors import ConfigError, ConfigIssue
from gatekeeper.config.loader import LoadedConfig, load_config, load_or_report, parse_config

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "LoadedConfig",
    "load_config",
    "load_or_report",
    "parse_config",
]
