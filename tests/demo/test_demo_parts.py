"""The demo's pieces on their own: its policy and keys, the sample LLM upstream, the live view."""

from __future__ import annotations

import random
import re
import shlex
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import aiohttp

from gatekeeper.config import load_config
from gatekeeper.demo.banner import DemoInfo, banner, gatekeeper_command
from gatekeeper.demo.policy import merge, write_demo_policy
from gatekeeper.demo.progress import Snapshot, render
from gatekeeper.demo.scenario import SCENARIO
from gatekeeper.demo.traffic import CustomerStats
from gatekeeper.demo.upstream import LlmUpstream
from gatekeeper.demo.usage import LimitView
from gatekeeper.edge import key_hash


def test_merge_appends_lists_and_merges_mappings() -> None:
    base = {"a": {"keys": [1], "x": 1}, "b": 2}
    assert merge(base, {"a": {"keys": [2], "y": 3}, "c": 4}) == {
        "a": {"keys": [1, 2], "x": 1, "y": 3},
        "b": 2,
        "c": 4,
    }
    assert base == {"a": {"keys": [1], "x": 1}, "b": 2}


def test_demo_policy_is_valid_and_every_demo_key_names_its_customer(tmp_path: Path) -> None:
    path = write_demo_policy(tmp_path, webhook_url="http://127.0.0.1:1/hooks")
    policy = load_config(path, env={}).policy  # what check-config accepts
    for customer in SCENARIO:
        owner = policy.key_owner(key_hash(customer.key))
        if customer.id == "unknown":
            assert owner is None
        else:
            assert owner is not None and owner[0].id == customer.id and not owner[1].revoked
    # the reference customers keep their own keys next to the demo's
    assert {k.id for k in policy.customers["acme"].api_keys} >= {"acme-prod", "acme-demo"}
    assert policy.customers["initech"].spend_cap is not None
    assert "http://127.0.0.1:1/hooks" in path.read_text()


async def test_upstream_answers_like_an_llm_api_with_usage_headers() -> None:
    upstream = await LlmUpstream(rng=random.Random(7), latency_per_token_s=0).start()
    base = f"http://127.0.0.1:{upstream.port}"
    try:
        async with aiohttp.ClientSession() as session:
            chat = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 50}
            async with session.post(f"{base}/v1/chat/completions", json=chat) as r:
                body = await r.json()
                assert r.status == 200
                usage = body["usage"]
                assert usage["prompt_tokens"] == 10 and 12 <= usage["completion_tokens"] <= 50
                assert int(r.headers["x-usage-total-tokens"]) == usage["total_tokens"]
            async with session.post(f"{base}/v1/embeddings", json={"input": ["abcd", "ef"]}) as r:
                body = await r.json()
                assert len(body["data"]) == 2 and r.headers["x-usage-total-tokens"] == "2"
            async with session.get(f"{base}/v1/models") as r:
                assert [m["id"] for m in (await r.json())["data"]] == ["demo-small", "demo-large"]
            async with session.post(f"{base}/v1/chat/completions", data=b"not json") as r:
                assert r.status == 400
    finally:
        await upstream.stop()
    assert upstream.hits == Counter({"chat": 2, "embeddings": 1, "models": 1})


def test_view_shows_answers_and_the_closest_limit() -> None:
    stats = CustomerStats(sent=10, statuses=Counter({200: 7, 402: 3}), last_denial="402 Cap")
    spend = LimitView("spend", "", limit=500_000_000, used=450_000_000, window_s=0)
    quota = LimitView("quota", "chat_requests", limit=100_000, used=10, window_s=0)
    snap = Snapshot(
        elapsed_s=30, duration_s=60, stats={"initech": stats},
        usage={"initech": (quota, spend)}, alerts=(), alerts_total=0, transport_errors=0,
    )  # fmt: skip
    lines = render(snap)
    assert "0:30 / 1:00" in lines[0] and "10 requests" in lines[0]
    (row,) = [line for line in lines if "initech" in line]
    assert "spend" in row and "90.0%" in row and "$0.45 / $0.50" in row
    assert row.split()[1:4] == ["10", "7", "0"] and "last denial: 402 Cap" in row


def _info() -> DemoInfo:
    return DemoInfo(
        envoy_url="http://127.0.0.1:10000", api_url="http://127.0.0.1:8080",
        operator_token="tok-123", directory=Path("/tmp/gk-demo"), redis="embedded",
        billing="sqlite:/tmp/gk-demo/billing.sqlite", pids={"serve": 1},
    )  # fmt: skip


def test_banner_commands_run_as_printed_from_the_repository(tmp_path: Path) -> None:
    """The `gatekeeper usage` line names a command that runs from the repository root with the
    venv off PATH (as after ./scripts/demo), and no URL is left for the shell to glob."""
    repo = Path(__file__).resolve().parents[2]
    text = banner(_info())
    tried = text[text.index("Try:") :].splitlines()[1:]
    for line in filter(None, (x.strip() for x in tried)):
        shlex.split(line, comments=True)  # each is one well-formed shell command
        outside_quotes = re.sub(r"'[^']*'", "", line.split(" #")[0])
        assert "?" not in outside_quotes and "*" not in outside_quotes, line
    usage = next(line for line in tried if " usage hobbyist" in line)
    command = shlex.split(usage)[2:]  # after the two VAR=value assignments
    bare_path = "/usr/bin:/bin"  # the venv is not on PATH
    cmd = shlex.split(gatekeeper_command(path=bare_path, cwd=repo))
    assert cmd[0] != "gatekeeper" or shutil.which("gatekeeper", path=bare_path)
    done = subprocess.run(
        [*cmd, *command[command.index("usage") :], "--help"], cwd=repo, capture_output=True,
        text=True, timeout=60, env={"PATH": bare_path},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout


def test_gatekeeper_command_names_what_works(tmp_path: Path) -> None:
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    python = venv / "python"
    python.touch()
    # no script beside this Python: run the module
    assert gatekeeper_command(executable=str(python), path="", cwd=tmp_path) == (
        f"{python} -m gatekeeper"
    )
    script = venv / "gatekeeper"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert gatekeeper_command(executable=str(python), path="/usr/bin", cwd=tmp_path) == (
        ".venv/bin/gatekeeper"
    )
    assert gatekeeper_command(executable=str(python), path="/usr/bin", cwd=Path("/")) == (
        str(script).lstrip("/")
    )
    assert gatekeeper_command(executable=str(python), path=str(venv), cwd=tmp_path) == (
        "gatekeeper"
    )
