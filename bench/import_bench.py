"""`gatekeeper import` throughput: lines per second, beside what reading and validating alone cost.

    .venv/bin/python bench/import_bench.py [--lines 100000] [--redis-url URL] [--keep]

Figures, all measured in this one run, on one generated JSON Lines file (a third of the
customers on `free`, the rest on `pro`; every other one with an API key; one bad line):
  read            the bulk reader alone (bytes -> documents with line numbers)
  read+validate   and parse_customer against the catalog, per line (no Redis)
  import          `gatekeeper import FILE` in its own process, into an empty key prefix
  re-run          the same command again (reads and compares every record, writes nothing)
Redis: --redis-url, else an embedded one started here. The prefix is removed afterwards
(--keep leaves it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.config import ConfigError, load_config
from gatekeeper.config.customers import parse_customer
from gatekeeper.directory.bulk import BulkFormat, Entry, read_entries
from gatekeeper.store import EmbeddedRedis


def write_file(path: Path, lines: int) -> int:
    """The file; returns the 1-based number of its bad line."""
    bad = lines // 2 + 1
    with open(path, "w", encoding="utf-8") as out:
        for i in range(lines):
            doc: dict[str, object] = {"id": f"c{i:07d}", "plan": "pro" if i % 3 else "free"}
            if i % 2:
                digest = hashlib.sha256(f"key-{i}".encode()).hexdigest()
                doc["api_keys"] = [{"id": "main", "sha256": digest}]
            if i + 1 == bad:
                doc["plan"] = "platinum"
            out.write(json.dumps(doc) + "\n")
    return bad


def offline(path: Path) -> tuple[float, float]:
    """Seconds to read the file, and to read and validate it."""
    policy = load_config(None, env={}).policy
    start = time.perf_counter()
    with open(path, "rb") as f:
        entries = [e for e in read_entries(f, BulkFormat.JSONL) if isinstance(e, Entry)]
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    for entry in entries:
        with contextlib.suppress(ConfigError):
            parse_customer(entry.customer, entry.doc, plans=policy.plans,
                           features=policy.features, check_cap_ceiling=False)  # fmt: skip
    return read_s, read_s + time.perf_counter() - start


def run_import(path: Path, url: str, prefix: str) -> tuple[float, str, str, int]:
    env = {**os.environ, "GATEKEEPER_REDIS_URL": url, "GATEKEEPER_REDIS_KEY_PREFIX": prefix}
    env.pop("GATEKEEPER_CONFIG", None)
    gatekeeper = Path(sys.executable).with_name("gatekeeper")
    start = time.perf_counter()
    proc = subprocess.run(
        [str(gatekeeper), "import", str(path)], env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    return time.perf_counter() - start, proc.stdout.strip(), proc.stderr.strip(), proc.returncode


async def drop(url: str, prefix: str) -> None:
    client: Redis = Redis.from_url(url)
    try:
        batch = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await client.delete(*batch)
                batch = []
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--redis-url")
    parser.add_argument("--keep", action="store_true", help="leave the imported prefix")
    args = parser.parse_args()
    embedded = None if args.redis_url else EmbeddedRedis().start()
    url = args.redis_url or (embedded.url if embedded else "")
    prefix = f"gkbench-import-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "customers.jsonl"
            bad = write_file(path, args.lines)
            read_s, validate_s = offline(path)
            print(
                f"lines           {args.lines:,} (bad line {bad:,}), {path.stat().st_size:,} bytes"
            )
            print(f"read            {args.lines / read_s:>9,.0f} lines/s")
            print(f"read+validate   {args.lines / validate_s:>9,.0f} lines/s")
            for label in ("import", "re-run"):
                seconds, out, err, code = run_import(path, url, prefix)
                rate = args.lines / seconds
                print(f"{label:<15} {rate:>9,.0f} lines/s  {seconds:6.1f} s  exit {code}  {out}")
                if err.count("\n") > 0 or str(bad) not in err:
                    print(f"  stderr: {err[:500]}")
                    return 1
            print(f"redis {url}, prefix {prefix}")
    finally:
        if not args.keep:
            asyncio.run(drop(url, prefix))
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
