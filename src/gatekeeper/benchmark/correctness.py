"""Exactness under load: limited customers driven past their limits, counted three ways.

For each check the bench counts the admitted answers (200) it got back through Envoy, reads
the Redis counter (through the engine's `usage()`, which consumes nothing) and sums the usage
events of that customer in its partition stream. `violations()` compares them:

- hard limit: admitted ≤ limit (no overshoot); counter = admitted = event quantity (nothing
  lost, nothing charged without an answer); every other answer the limit's 429, and exactly
  `limit` admitted when the burst exceeds it.
- spend cap: spent ≤ cap (no overshoot); counter = the events' amounts; one `requests` event
  per admitted answer; every other answer 402.

`compare_answers` normalizes answers (status, problem type, RateLimit headers without the
time-dependent reset) so two transports can be compared for the same scripted requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from redis.asyncio import Redis

from gatekeeper.benchmark.model import Check
from gatekeeper.benchmark.policy import ROUTE_PATH, api_key
from gatekeeper.engine import DecisionEngine, LimitKind
from gatekeeper.events import UsageEvent
from gatekeeper.store.keys import KeySpace

__all__ = ["Tally", "burst", "hard_violations", "normalize", "spend_violations", "stream_usage"]


@dataclass(frozen=True, slots=True)
class Tally:
    sent: int
    admitted: int
    denied: int  # the expected denial status
    other: int


async def burst(
    session: aiohttp.ClientSession,
    url: str,
    customer: str,
    *,
    requests: int,
    concurrency: int,
    denial: int,
) -> Tally:
    """`requests` POSTs as `customer`, `concurrency` at a time; answers counted by status."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    counts = {"admitted": 0, "denied": 0, "other": 0}
    headers = {"x-api-key": api_key(customer)}

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            try:
                async with session.post(url + ROUTE_PATH, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            key = "admitted" if status == 200 else "denied" if status == denial else "other"
            counts[key] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Tally(requests, counts["admitted"], counts["denied"], counts["other"])


async def stream_usage(redis: Redis, keys: KeySpace, customer: str) -> tuple[int, int, int]:
    """(requests quantity, requests events, amount in nano-units) of `customer`'s usage events."""
    quantity = events = amount = 0
    last = "-"
    stream = keys.usage_stream(keys.partition(customer))
    while True:
        entries: list[tuple[bytes, dict[bytes | str, bytes | str]]] = await redis.xrange(  # type: ignore[assignment]
            stream, min=last, max="+", count=5000
        )
        if last != "-":
            entries = entries[1:]
        if not entries:
            return quantity, events, amount
        for _entry_id, fields in entries:
            event = UsageEvent.from_fields(fields)
            if event.customer == customer:
                amount += event.amount_nano
                if event.feature == "requests":
                    quantity += event.quantity
                    events += 1
        last = entries[-1][0].decode()


async def counter(engine: DecisionEngine, customer: str, kind: LimitKind) -> int:
    """The Redis counter (`used`) of `customer`: the requests quota, or the spend."""
    statuses = await engine.usage(customer) or ()
    for s in statuses:
        if s.kind is kind and (kind is LimitKind.SPEND or s.feature == "requests"):
            return s.used
    return 0


def hard_violations(
    tally: Tally, *, limit: int, counter: int, event_quantity: int
) -> tuple[str, ...]:
    found = []
    if tally.admitted > limit:
        found.append(f"overshoot: {tally.admitted} admitted past a hard limit of {limit}")
    if counter > limit:
        found.append(f"overshoot: counter at {counter} past a hard limit of {limit}")
    if counter != tally.admitted:
        found.append(f"counter {counter} != {tally.admitted} admitted answers")
    if event_quantity != counter:
        found.append(f"lost: usage events hold {event_quantity} units, counter {counter}")
    if tally.other:
        found.append(f"{tally.other} answers neither 200 nor 429 (errors)")
    elif tally.admitted != min(limit, tally.sent):
        found.append(f"under-admitted: {tally.admitted} of {min(limit, tally.sent)} allowed")
    return tuple(found)


def spend_violations(
    tally: Tally, *, cap_nano: int, spent_nano: int, event_amount_nano: int, events: int
) -> tuple[str, ...]:
    found = []
    if spent_nano > cap_nano:
        found.append(f"overshoot: spent {spent_nano} past a cap of {cap_nano} nano-units")
    if event_amount_nano != spent_nano:
        found.append(f"lost: usage events hold {event_amount_nano} nano, counter {spent_nano}")
    if events != tally.admitted:
        found.append(f"{events} request events != {tally.admitted} admitted answers")
    if tally.other:
        found.append(f"{tally.other} answers neither 200 nor 402 (errors)")
    elif tally.admitted == 0:
        found.append("the capped customer was never admitted")
    return tuple(found)


def make_check(
    *, scenario: str, level: str, customer: str, kind: str, limit: int, tally: Tally,
    counter_value: int, events_value: int, expected: int, violations: Sequence[str],
) -> Check:  # fmt: skip
    return Check(
        scenario=scenario, level=level, customer=customer, kind=kind, limit=limit,
        sent=tally.sent, admitted=tally.admitted, denied=tally.denied, other=tally.other,
        counter=counter_value, events=events_value, expected=expected,
        violations=tuple(violations),
    )  # fmt: skip


_COMPARED_HEADERS = ("ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining")


def normalize(status: int, headers: Mapping[str, str], body: bytes, *, with_values: bool) -> str:
    """One answer as comparable text: status, problem type, RateLimit fields (reset left out).

    `with_values=False` keeps only which RateLimit headers are present (for a customer whose
    counters differ between the two runs compared)."""
    lower = {k.lower(): v for k, v in headers.items()}
    problem = ""
    if status != 200 and body:
        try:
            problem = str(json.loads(body).get("type", ""))
        except (ValueError, AttributeError):
            problem = "<not json>"
    parts = [str(status), problem]
    for name in (*_COMPARED_HEADERS, "ratelimit", "retry-after"):
        if name not in lower:
            continue
        if not with_values or name == "retry-after":
            parts.append(name)
        elif name == "ratelimit":  # "name";r=<remaining>;t=<reset>: t depends on the clock
            parts.append(
                f"{name}={';'.join(p for p in lower[name].split(';') if not p.startswith('t='))}"
            )
        else:
            parts.append(f"{name}={lower[name]}")
    return " ".join(parts)
