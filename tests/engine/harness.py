"""Build an engine over a real Redis for a test: policy in, engine + store + clock out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis

from gatekeeper.clock import ManualClock
from gatekeeper.engine import DecisionEngine, StaticPolicy
from gatekeeper.model import Policy
from gatekeeper.settings import RedisSettings
from gatekeeper.store import RedisDecisionStore

START = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


@dataclass
class Harness:
    redis: Redis
    engine: DecisionEngine
    store: RedisDecisionStore
    source: StaticPolicy
    clock: ManualClock = field(default_factory=lambda: ManualClock(START))

    def usage_stream(self, customer: str = "cust") -> str:
        return self.store.keys.usage_stream(self.store.keys.partition(customer))

    def alert_stream(self, customer: str = "cust") -> str:
        return self.store.keys.alert_stream(self.store.keys.partition(customer))

    async def events(self, customer: str = "cust") -> list[dict[str, str]]:
        entries = await self.redis.xrange(self.usage_stream(customer))
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]

    async def alerts(self, customer: str = "cust") -> list[dict[str, str]]:
        entries = await self.redis.xrange(self.alert_stream(customer))
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]


def make_harness(
    redis: Redis, policy: Policy, prefix: str, *, clock: ManualClock | None = None, **settings: int
) -> Harness:
    store = RedisDecisionStore(redis=redis, settings=RedisSettings(key_prefix=prefix, **settings))
    source = StaticPolicy(policy)
    clk = clock or ManualClock(START)
    engine = DecisionEngine(policy=source, store=store, clock=clk)
    return Harness(redis=redis, engine=engine, store=store, source=source, clock=clk)
