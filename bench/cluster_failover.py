"""Failover under load on a local Redis Cluster: kill -9 a customer's primary mid-load.

    .venv/bin/python bench/cluster_failover.py [--rate 100] [--seconds 12] [--kill-at 3]
        [--limit 600] [--node-timeout-ms 2000] [--repeat 1]

Starts a private 3-primary/3-replica cluster (store/localcluster.py) per run, runs the
engine in this process against one customer's hard limit, SIGKILLs the primary of its slot
and prints what happened (src/gatekeeper/benchmark/failover.py says what each column is).
Every node is stopped at the end of each run. docs/scaling.md ("Failover") has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from gatekeeper.benchmark.failover import run_failover

_HEAD = (
    f"{'node timeout':>12} {'sent':>5} {'admitted':>8} {'denied':>6} {'errors':>6} "
    f"{'outage s':>8} {'limit':>5} {'counter':>7} {'events':>6} {'lost':>4} "
    f"{'unanswered':>10} {'overshoot':>9} {'billed, not 200':>15} {'200, not billed':>15}"
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rate", type=float, default=100.0, help="decisions/s")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--kill-at", type=float, default=3.0, help="seconds into the load")
    parser.add_argument("--limit", type=int, default=600, help="the customer's hard limit")
    parser.add_argument("--node-timeout-ms", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    print(_HEAD, flush=True)
    for _ in range(args.repeat):
        r = asyncio.run(
            run_failover(
                rate=args.rate, seconds=args.seconds, kill_at_s=args.kill_at, limit=args.limit,
                node_timeout_ms=args.node_timeout_ms,
            )
        )  # fmt: skip
        print(
            f"{r.node_timeout_ms:>10}ms {r.sent:>5} {r.admitted:>8} {r.denied:>6} {r.errors:>6} "
            f"{r.outage_s:>8.2f} {r.limit:>5} {r.counter:>7} {r.events:>6} {r.lost:>4} "
            f"{r.unanswered:>10} {r.overshoot:>9} {r.billed_unanswered:>15} "
            f"{r.answered_unbilled:>15}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
