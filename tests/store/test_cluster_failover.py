"""Failover under load (benchmark/failover.py): a customer's primary is killed while ~100
decisions/s run against its hard limit; decisions resume once the replica is promoted, and the
limit holds on the promoted primary, overshot by at most the increments replication lost."""

from __future__ import annotations

import math

import pytest

from gatekeeper.benchmark.failover import run_failover

pytestmark = pytest.mark.slow


async def test_a_killed_primary_is_replaced_and_the_hard_limit_holds() -> None:
    # cluster-node-timeout 1 s (LocalCluster's default is 2 s): the promotion takes about
    # node timeout + election, and the test stays ~12 s
    r = await run_failover(rate=100, seconds=8, kill_at_s=2, limit=350, node_timeout_ms=1_000)
    assert r.sent == 800
    assert r.errors > 0  # the kill was felt: calls to the dead primary failed ...
    assert not math.isnan(r.outage_s) and r.outage_s < 6  # ... then decisions resumed
    assert r.denied > 0  # the limit was reached after the failover
    assert r.counter <= r.limit  # the promoted primary's counter never passes the limit
    assert r.events == r.counter  # counter and usage events come from one script, one slot
    assert r.unanswered == 0  # every call that ran but lost its reply was voided
    assert r.billed_unanswered == 0  # per decision id: billed only if answered admitted
    assert r.answered_unbilled <= r.lost  # ... and answered admitted ones are billed but for
    # what replication lost
    assert r.overshoot <= r.lost  # only what async replication forgot is admitted twice
    assert r.lost <= 10  # ~0.1 s of decisions at most (loopback replication lags far less)
