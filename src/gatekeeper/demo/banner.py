"""What the demo prints once everything runs: where to look and what to try."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.demo.scenario import SCENARIO

__all__ = ["DemoInfo", "banner", "gatekeeper_command", "ready_line"]

RAISE_CAP = '{"amount": "2.00"}'


@dataclass(frozen=True, slots=True)
class DemoInfo:
    envoy_url: str
    api_url: str
    operator_token: str
    directory: Path
    redis: str  # "embedded" or "GATEKEEPER_REDIS_URL"
    billing: str  # where the worker writes
    pids: Mapping[str, int]


def _known_customers() -> list[tuple[str, str, str]]:
    return [(c.id, c.key, c.story) for c in SCENARIO if c.id != "unknown"]


def gatekeeper_command(
    *, executable: str | None = None, path: str | None = None, cwd: Path | None = None
) -> str:
    """How to run this gatekeeper from the working directory, as a shell command:
    `gatekeeper` when the one on PATH is this one, else the script beside this Python
    (`.venv/bin/gatekeeper` from the repository, whose venv is rarely on PATH), else
    `<python> -m gatekeeper`. Defaults: sys.executable, $PATH, the working directory."""
    python = Path(executable or sys.executable)
    script = python.parent / "gatekeeper"
    found = shutil.which("gatekeeper", path=path if path is not None else os.environ.get("PATH"))
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return "gatekeeper"
    if not script.exists():
        return f"{shlex.quote(str(python))} -m gatekeeper"
    here = (cwd or Path.cwd()).absolute()
    try:
        return shlex.quote(str(script.absolute().relative_to(here)))
    except ValueError:
        return shlex.quote(str(script))


def banner(info: DemoInfo) -> str:
    chat = '{"model": "demo-small", "messages": [{"role": "user", "content": "Hello"}], ' \
        '"max_tokens": 64}'  # fmt: skip
    rows = [
        ("Envoy (send API calls here)", info.envoy_url),
        ("Dashboard, operator", f"{info.api_url}/ui/#token={info.operator_token}"),
    ]
    rows += [
        (f"Dashboard, customer {cid}", f"{info.api_url}/ui/#token={key}")
        for cid, key, _ in _known_customers()[:1]
    ]
    rows += [
        ("API operator token", info.operator_token),
        ("Redis", info.redis),
        ("Billing store", info.billing),
        ("Data directory (logs, policy)", str(info.directory)),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["", "gatekeeper demo: everything runs on this machine; Ctrl-C stops it all.", ""]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    lines += ["", "Demo customers and their API keys:"]
    lines += [f"  {cid:<9} {key:<18} {story}" for cid, key, story in _known_customers()]
    q = shlex.quote
    lines += [
        "",
        "Try:",
        f"  curl -s {info.envoy_url}/v1/chat/completions -H 'Authorization: Bearer demo-acme-key'"
        f" -H 'content-type: application/json' -d {q(chat)}",
        f"  curl -s -H 'Authorization: Bearer demo-acme-key' "
        f"{info.api_url}/v1/customers/acme/usage  # live usage vs limits, spend vs cap",
        f"  curl -s -H {q('Authorization: Bearer ' + info.operator_token)} "
        f"{q(info.api_url + '/v1/customers/initech/events?limit=5')}",
        f"  GATEKEEPER_API_URL={info.api_url} GATEKEEPER_API_TOKEN={q(info.operator_token)} "
        f"{gatekeeper_command()} usage hobbyist",
        "  curl -s -X PUT -H 'Authorization: Bearer demo-initech-key'"
        f" -d {q(RAISE_CAP)} {info.api_url}/v1/customers/initech/spend-cap  # raise its own cap",
        "",
    ]
    return "\n".join(lines)


def ready_line(pids: Mapping[str, int]) -> str:
    """The line a script or test waits for; lists every process the demo started."""
    listed = ", ".join(f"{name} {pid}" for name, pid in pids.items())
    return f"gatekeeper demo is ready (pids: {listed})"
