"""Settings from environment variables: `GATEKEEPER_<SECTION>_<FIELD>` and `GATEKEEPER_<FIELD>`.

The environment is a `Mapping` passed in (the CLI passes `os.environ`, tests pass dicts); this
module never reads `os.environ`. Environment values win over the file. An empty value counts as
unset. A variable under a known section prefix (`GATEKEEPER_SERVER_`, `GATEKEEPER_REDIS_`,
`GATEKEEPER_BILLING_`, `GATEKEEPER_ALERTS_`) that names no field is an error with a
did-you-mean hint; any other `GATEKEEPER_*` variable (GATEKEEPER_CONFIG, webhook secrets, ...)
is left alone. Nothing here raises: problems are recorded in the `Issues` collector.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from gatekeeper.config.errors import Issues
from gatekeeper.config.settings_fields import LIST_FIELDS, SECTIONS, TOP_LEVEL, FieldSpec, env_name

__all__ = ["ENV_SOURCE", "Assigned", "SettingKey", "apply_env"]

ENV_SOURCE = "environment"

SettingKey = tuple[str | None, str]  # (section or None for top level, field)


@dataclass(frozen=True, slots=True)
class Assigned:
    """A setting's value and where it came from (for messages about it)."""

    value: object
    path: str  # YAML path or variable name
    line: int | None
    source: str | None  # None = the config file


def _known() -> dict[str, tuple[SettingKey, FieldSpec]]:
    known: dict[str, tuple[SettingKey, FieldSpec]] = {}
    for section, fields in SECTIONS.items():
        for name, spec in fields.items():
            known[env_name(section, name)] = ((section, name), spec)
    for name, spec in TOP_LEVEL.items():
        known[env_name(None, name)] = ((None, name), spec)
    return known


def apply_env(
    values: dict[SettingKey, Assigned],
    env: Mapping[str, str],
    issues: Issues,
    *,
    ignore: Collection[str] = (),
) -> None:
    """Override `values` from `env`; `ignore` names variables used otherwise (webhook secrets)."""
    known = _known()
    for name in sorted(env):
        if not name.startswith("GATEKEEPER_") or name in ignore:
            continue
        hit = known.get(name)
        if hit is None:
            _check_unknown(name, issues)
            continue
        raw = env[name]
        if raw == "":
            continue
        key, spec = hit
        try:
            value = spec.convert(raw, f"'{raw}'", from_env=True)
        except ValueError as exc:
            issues.add(name, None, str(exc), source=ENV_SOURCE)
            continue
        values[key] = Assigned(value, name, None, ENV_SOURCE)


def _check_unknown(name: str, issues: Issues) -> None:
    for section, fields in SECTIONS.items():
        prefix = f"GATEKEEPER_{section.upper()}_"
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if rest.lower() in LIST_FIELDS.get(section, ()):
            message = (
                f"lists cannot be set by environment; set settings.{section} in the config file"
            )
        else:
            # Compare the field part only: the shared prefix would make every name look close.
            close = difflib.get_close_matches(rest, [field.upper() for field in fields], n=1)
            message = "unknown setting" + (f"; did you mean {prefix}{close[0]}?" if close else "")
        issues.add(name, None, message, source=ENV_SOURCE)
        return
