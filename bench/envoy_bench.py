"""Requests/s through a real Envoy with gatekeeper's gRPC ext_authz, beside Envoy alone.

    .venv/bin/python bench/envoy_bench.py [--seconds 5] [--connections 32] [--redis-url URL]

Same run, same machine: (1) Envoy → upstream on a route with ext_authz disabled (the
proxy's own ceiling), (2) the metered chat route: ext_authz Check over gRPC + one Lua decision
+ access-log settlement. Needs `wrk` (Debian package). Reports requests/s and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.app import App
from gatekeeper.config import load_config
from tests.e2e.harness import Upstream, front_proxy

POLICY = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "policy.yaml"
LUA = """
wrk.method = "{method}"
wrk.headers["x-api-key"] = "gk-test-busy"
wrk.headers["x-test-tokens"] = "100"
"""


def _wrk(url: str, seconds: float, connections: int, method: str) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA.format(method=method))
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:.0f}s", "-s", script.name, url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    os.unlink(script.name)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        print(f"  ({non2xx.group(1)} non-2xx responses)")
    return float(found.group(1)) if found else 0.0


async def _run(opts: argparse.Namespace) -> None:
    env = {"GATEKEEPER_REDIS_KEY_PREFIX": f"gkbench-{uuid.uuid4().hex[:8]}"}
    if opts.redis_url:
        env["GATEKEEPER_REDIS_URL"] = opts.redis_url
    text = POLICY.read_text().replace(
        "chat_requests: {limit: 50, period: day, enforcement: hard}",
        "chat_requests: {limit: 1000000000, period: day, enforcement: hard}",
    )
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(text)
        app = await App(load_config(policy, env=env)).start(
            host="127.0.0.1", grpc_port=0, authz_http_port=0, http_port=0
        )
    upstream = await Upstream().start()
    loop = asyncio.get_running_loop()
    results: dict[str, float] = {}
    try:
        for mode in ("http", "grpc"):
            with front_proxy(
                mode,
                grpc_port=app.grpc_port,
                authz_http_port=app.authz_http_port,
                upstream_port=upstream.port,
            ) as envoy:
                if mode == "http":
                    results["alone"] = await loop.run_in_executor(
                        None, _wrk, envoy.url + "/healthz", opts.seconds, opts.connections, "GET"
                    )
                results[mode] = await loop.run_in_executor(
                    None,
                    _wrk,
                    envoy.url + "/v1/chat/completions",
                    opts.seconds,
                    opts.connections,
                    "POST",
                )
        alone = results["alone"]
        print(f"Envoy alone (ext_authz disabled):         {alone:9.0f} req/s  1.00")
        for mode in ("http", "grpc"):
            print(
                f"Envoy + ext_authz {mode:4} + decision + ALS:  {results[mode]:9.0f} req/s  "
                f"{results[mode] / alone:.2f}"
            )
        print(f"HTTP mode / gRPC mode: {results['http'] / results['grpc']:.2f}")
        print("note: upstream is aiohttp in gatekeeper's process; Envoy, Redis, wrk share cores")
    finally:
        await upstream.stop()
        await app.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis-url", default=os.environ.get("GATEKEEPER_REDIS_URL"))
    opts = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    asyncio.run(_run(opts))


if __name__ == "__main__":
    main()
