"""The demo's traffic generator: each demo customer sends requests through Envoy at its rates.

Arrivals are Poisson at the scenario's rates, each request its own task (a slow answer does not
slow the rate), at most `max_in_flight` at once (beyond that an arrival is skipped and counted).
Answers are tallied per customer by status, with the reason of the latest denial.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from gatekeeper.demo.scenario import DemoCustomer
from gatekeeper.demo.upstream import estimate_tokens

__all__ = ["CustomerStats", "TrafficGenerator"]

_PROMPTS = (
    "Summarise our usage-based pricing page in two sentences.",
    "Write a haiku about rate limits.",
    "Explain the difference between a hard and a soft quota to a new customer.",
    "Draft a friendly email telling a customer they reached 80% of their monthly tokens.",
    "List three ways to reduce token usage in a retrieval pipeline.",
)


@dataclass(slots=True)
class CustomerStats:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    tokens: int = 0  # x-usage-total-tokens of admitted answers
    skipped: int = 0  # arrivals dropped because too many requests were in flight
    last_denial: str = ""

    @property
    def admitted(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def denied(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 400)


def _reason(status: int, body: bytes) -> str:
    """`429 quota chat_requests` from a problem body (whatever parts it has)."""
    try:
        problem = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        problem = None
    if not isinstance(problem, dict):
        return str(status)
    parts = [str(status), str(problem.get("title") or "")]
    if problem.get("feature"):
        parts.append(str(problem["feature"]))
    return " ".join(p for p in parts if p)


class TrafficGenerator:
    """Sends the scenario's traffic to `base_url` (Envoy) until stop()."""

    def __init__(
        self,
        *,
        base_url: str,
        scenario: tuple[DemoCustomer, ...],
        rng: random.Random | None = None,
        max_in_flight: int = 64,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._scenario = scenario
        self._rng = rng or random.Random()
        self._slots = max_in_flight
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self.stats: dict[str, CustomerStats] = {c.id: CustomerStats() for c in scenario}
        self.errors = 0  # transport errors (Envoy unreachable, timeouts)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=self._slots)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            pacers = [
                asyncio.create_task(self._pace(session, customer, kind, rate))
                for customer in self._scenario
                for kind, rate in (
                    ("chat", customer.chat_per_s),
                    ("embeddings", customer.embeddings_per_s),
                    ("models", customer.models_per_s),
                )
                if rate > 0
            ]
            await self._stopping.wait()
            for task in pacers:
                task.cancel()
            await asyncio.gather(*pacers, return_exceptions=True)
            if self._inflight:
                await asyncio.wait(self._inflight, timeout=5)
            for task in self._inflight:
                task.cancel()

    async def _pace(
        self, session: aiohttp.ClientSession, customer: DemoCustomer, kind: str, rate: float
    ) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self._rng.expovariate(rate))
            if len(self._inflight) >= self._slots:
                self.stats[customer.id].skipped += 1
                continue
            task = asyncio.create_task(self._send(session, customer, kind))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send(
        self, session: aiohttp.ClientSession, customer: DemoCustomer, kind: str
    ) -> None:
        stats = self.stats[customer.id]
        headers = {"authorization": f"Bearer {customer.key}"}
        prompt = self._rng.choice(_PROMPTS)
        stats.sent += 1
        try:
            if kind == "chat":
                body = {
                    "model": "demo-small",
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": customer.max_tokens,
                }
                request = session.post(
                    f"{self._base_url}/v1/chat/completions", json=body, headers=headers
                )
            elif kind == "embeddings":
                headers["x-token-count"] = str(estimate_tokens(prompt))
                request = session.post(
                    f"{self._base_url}/v1/embeddings", json={"input": prompt}, headers=headers
                )
            else:
                request = session.get(f"{self._base_url}/v1/models", headers=headers)
            async with request as response:
                payload = await response.read()
                stats.statuses[response.status] += 1
                if response.status < 300:
                    with contextlib.suppress(ValueError):
                        stats.tokens += int(response.headers.get("x-usage-total-tokens", "0"))
                else:
                    stats.last_denial = _reason(response.status, payload)
        except (aiohttp.ClientError, TimeoutError):
            self.errors += 1
