"""Failover under load: SIGKILL the primary of a customer's slot while decisions run against
the customer's hard limit, on a local Redis Cluster (3 primaries, 3 replicas).

What is measured, exactly:
- One customer, plan with a hard daily quota of `limit` requests; `rate` decisions/s sent on
  a fixed schedule (each its own task, so a slow answer does not slow the schedule) for
  `seconds`; at `kill_at_s` the primary serving the customer's slot gets SIGKILL. Its replica
  is promoted by the Cluster after `cluster-node-timeout` (`node_timeout_ms`) and an election.
- Outage: from the kill to the end of the first decision sent after it that got an answer;
  `errors` = decisions that got StoreUnavailable (the edge answers them per failure mode).
- Afterwards (the App stopped: the decisions whose reply was lost are voided by then, see
  store/journal.py), from the promoted primary: the customer's counter and the units its
  usage events bill (voids netted). `lost` = admitted answers the counter does not hold
  (increments acknowledged by the old primary that never reached its replica: Redis
  replicates asynchronously). `unanswered` = counted increments no admitted answer stands for
  (a call that ran, then lost its reply, and was not voided: 0 expected). Per decision id:
  `billed_unanswered` = ids whose usage events bill units though the decision was not
  answered admitted (0 expected); `answered_unbilled` = ids answered admitted that bill
  nothing (what replication lost; at most `lost`).
- Exactness: the counter never exceeds the limit; admitted answers exceed the limit by at
  most `lost` (the promoted replica forgot them and admitted that many again).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.crc import key_slot

from gatekeeper.benchmark.inprocess import load, running_app
from gatekeeper.engine import DecisionEngine, DecisionRequest, MeterRequest
from gatekeeper.errors import StoreUnavailable
from gatekeeper.events import UsageEvent
from gatekeeper.model import Period
from gatekeeper.periods import window_for
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.localcluster import LocalCluster, slot_owners_of

__all__ = ["FailoverResult", "run_failover"]

CUSTOMER = "victim"
_POLICY = """\
version: 1
currency: USD
features:
  requests: {{type: metered, unit: request}}
plans:
  capped:
    entitlements:
      requests: {{limit: {limit}, period: day, enforcement: hard}}
customers:
  victim: {{plan: capped}}
"""


@dataclass(frozen=True, slots=True)
class FailoverResult:
    node_timeout_ms: int
    rate: float
    sent: int
    admitted: int
    denied: int
    errors: int
    limit: int
    counter: int
    events: int  # units the customer's usage events bill, voids netted
    outage_s: float  # kill -> first answer to a decision sent after the kill
    errors_window_s: float  # first error -> last error
    billed_unanswered: int = 0  # decision ids billed, not answered admitted
    answered_unbilled: int = 0  # decision ids answered admitted, billed nothing

    @property
    def lost(self) -> int:
        return max(0, self.admitted - self.counter)

    @property
    def unanswered(self) -> int:
        return max(0, self.counter - self.admitted)

    @property
    def overshoot(self) -> int:
        return max(0, self.admitted - self.limit)


async def _decide(engine: DecisionEngine) -> tuple[str, str]:
    """(outcome, decision id: "" unless admitted)."""
    try:
        decision = await engine.decide(
            DecisionRequest(CUSTOMER, meters=(MeterRequest("requests", 1),))
        )
    except StoreUnavailable:
        return "error", ""
    if decision.allowed:
        return "allowed", decision.decision_id
    return "denied", ""


async def run_failover(
    *,
    rate: float = 100.0,
    seconds: float = 12.0,
    kill_at_s: float = 3.0,
    limit: int = 600,
    node_timeout_ms: int = 2_000,
    prefix: str = "gkfailover",
) -> FailoverResult:
    """Start a private LocalCluster, run the load, kill, measure; stops every node."""
    cluster = LocalCluster(node_timeout_ms=node_timeout_ms)
    await asyncio.to_thread(cluster.start)
    try:
        text = _POLICY.format(limit=limit)
        settings = load(text, cluster.seeds, prefix, cluster=True).settings.redis
        keys = KeySpace(prefix=prefix, partitions=settings.partitions)
        slot = key_slot(keys.usage_stream(keys.partition(CUSTOMER)).encode())
        victim_port = (await asyncio.to_thread(cluster.slot_owners))[slot]
        async with running_app(text, cluster.seeds, prefix, cluster=True) as engine:
            warm, warm_id = await _decide(engine)  # warm: customer cached, script loaded
            assert warm == "allowed"
            outcomes = await _load(engine, cluster, victim_port, rate, seconds, kill_at_s)
        outcomes.append((-kill_at_s, -kill_at_s, "allowed", warm_id))
        return await _result(cluster, keys, outcomes, rate, limit, node_timeout_ms)
    finally:
        await asyncio.to_thread(cluster.stop)


# (sent at, answered at, outcome, decision id if admitted), times relative to the kill
_Outcome = tuple[float, float, str, str]


async def _load(
    engine: DecisionEngine,
    cluster: LocalCluster,
    victim_port: int,
    rate: float,
    seconds: float,
    kill_at_s: float,
) -> list[_Outcome]:
    start = time.monotonic()
    kill_time = start + kill_at_s
    outcomes: list[_Outcome] = []

    async def one() -> None:
        sent = time.monotonic()
        outcome, decision_id = await _decide(engine)
        outcomes.append((sent - kill_time, time.monotonic() - kill_time, outcome, decision_id))

    tasks: list[asyncio.Task[None]] = []
    killed = False
    for k in range(int(rate * seconds)):
        due = start + k / rate
        if not killed and due >= kill_time:
            cluster.kill(victim_port)  # SIGKILL, reaped: no shutdown, no final replication
            kill_time = time.monotonic()
            killed = True
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    return outcomes


async def _result(
    cluster: LocalCluster,
    keys: KeySpace,
    outcomes: list[_Outcome],
    rate: float,
    limit: int,
    node_timeout_ms: int,
) -> FailoverResult:
    window = window_for(datetime.now(UTC), Period.DAY)
    counter, billed = await asyncio.to_thread(
        _read_promoted, cluster, keys.quota(CUSTOMER, "requests", window.token),
        keys.usage_stream(keys.partition(CUSTOMER)),
    )  # fmt: skip
    after = [o for o in outcomes if o[0] >= 0 and o[2] != "error"]
    errors = [o for o in outcomes if o[2] == "error"]
    answered = {o[3] for o in outcomes if o[2] == "allowed"}
    billed_ids = {d for d, units in billed.items() if units}
    return FailoverResult(
        node_timeout_ms=node_timeout_ms, rate=rate, sent=len(outcomes) - 1,  # not the warm-up
        admitted=len(answered), denied=sum(1 for o in outcomes if o[2] == "denied"),
        errors=len(errors), limit=limit, counter=counter, events=sum(billed.values()),
        outage_s=min((o[1] for o in after), default=float("nan")),
        errors_window_s=(max(o[1] for o in errors) - min(o[1] for o in errors)) if errors else 0.0,
        billed_unanswered=len(billed_ids - answered), answered_unbilled=len(answered - billed_ids),
    )  # fmt: skip


def _read_promoted(cluster: LocalCluster, counter: str, stream: str) -> tuple[int, dict[str, int]]:
    """The counter's `u` and the units the customer's usage events bill per decision id
    (voids netted), from the primary now serving their slot (asked of the first node that
    answers: the killed one refuses)."""
    slot = key_slot(stream.encode())
    for port in cluster.ports:
        try:
            with cluster.client(port) as c:
                owner = slot_owners_of(c.execute_command("CLUSTER", "SLOTS"))[slot]
            with cluster.client(owner) as c:
                used: Any = c.hget(counter, "u")
                entries: Any = c.xrange(stream)
            billed: dict[str, int] = {}
            for _, fields in entries:
                e = UsageEvent.from_fields(fields)
                if e.customer == CUSTOMER:
                    billed[e.decision_id] = billed.get(e.decision_id, 0) + e.quantity
            return int(used or 0), billed
        except redis.ConnectionError:  # the killed node
            continue
    raise RuntimeError("no cluster node answered")
