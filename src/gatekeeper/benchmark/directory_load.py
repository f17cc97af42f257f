"""The customer directory the control-plane scenario (and tests) measure against.

N customers `c0 … c(N-1)` on one plan (a hard daily quota far out of reach, so every decision
is admitted and costs one Lua call), each with one API key `cp-key-<id>` stored as its SHA-256,
written straight into the directory with `CustomerRecords.put_many` (a few hundred records per
round trip, several batches in flight), or listed in a generated policy file. Customers are
asked for in a Zipf(s) mix over all N: rank r (1 = the hottest) is asked for with weight
1 / r**s, and rank r is customer `c<(r-1) * STRIDE mod N>`, so hot customers are spread over
partitions instead of being the first ids.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import random
from collections.abc import Iterator, Sequence

from redis.asyncio import Redis

from gatekeeper.store.customers import CustomerRecord, CustomerRecords, Source
from gatekeeper.store.keys import KeySpace

__all__ = [
    "ROUTE",
    "ZipfMix",
    "api_key",
    "catalog_text",
    "customer_id",
    "policy_file_text",
    "populate",
]

PLAN = "basic"
ROUTE = "/v1/chat"
STRIDE = 7_919  # a prime: rank -> id is a permutation of 0..N-1 whenever N is not its multiple
_BATCH = 5_000  # records per put_many call
_IN_FLIGHT = 4  # put_many calls at once (Redis works while Python packs the next batch)

CATALOG = f"""\
version: 1
currency: USD
features:
  requests: {{type: metered, unit: request}}
plans:
  {PLAN}:
    entitlements:
      requests: {{limit: 1000000000000, period: day, enforcement: hard}}
routes:
  - match: {{method: POST, path_prefix: {ROUTE}}}
    meters:
      - {{feature: requests, cost: 1}}
"""


def catalog_text() -> str:
    """The policy file of the populated directory: the catalog, no customers."""
    return CATALOG


def customer_id(i: int) -> str:
    return f"c{i}"


def api_key(customer: str) -> str:
    return f"cp-key-{customer}"


def key_sha(customer: str) -> str:
    return hashlib.sha256(api_key(customer).encode()).hexdigest()


def _doc(customer: str) -> dict[str, object]:
    return {"plan": PLAN, "api_keys": [{"id": "k0", "sha256": key_sha(customer)}]}


def policy_file_text(n: int) -> str:
    """The catalog with `n` customers listed in the file, each with its key (as YAML)."""
    lines = [CATALOG.rstrip("\n"), "customers:"]
    for i in range(n):
        cid = customer_id(i)
        lines.append(f"  {cid}: {{plan: {PLAN}, api_keys: [{{id: k0, sha256: {key_sha(cid)}}}]}}")
    return "\n".join(lines) + "\n"


def _records(start: int, stop: int, updated_at: str) -> list[CustomerRecord]:
    return [
        CustomerRecord(customer_id(i), _doc(customer_id(i)), Source.API, updated_at=updated_at)
        for i in range(start, stop)
    ]


async def populate(redis: Redis, keys: KeySpace, n: int, *, updated_at: str) -> int:
    """Write customers c0..c(n-1) with `put_many` (no audit record: a bulk load, as an import
    without history); returns the records written."""
    records = CustomerRecords(redis=redis, keys=keys)
    channel = keys.invalidate_channel()
    starts = iter(range(0, n, _BATCH))
    written = 0

    async def worker() -> None:
        nonlocal written
        for start in starts:
            batch = _records(start, min(n, start + _BATCH), updated_at)
            done = await records.put_many(batch, channel=channel)
            written += len(done)  # after the await: `written +=` of an await would lose counts

    await asyncio.gather(*(worker() for _ in range(_IN_FLIGHT)))
    return written


class ZipfMix:
    """Customer ids drawn from a Zipf(`s`) mix over `n` customers (seeded: the same run draws
    the same ids)."""

    def __init__(self, n: int, s: float = 1.1, *, seed: int = 1) -> None:
        self._n = n
        self._cum = list(itertools.accumulate(1.0 / (r**s) for r in range(1, n + 1)))
        self._rng = random.Random(seed)

    def rank_id(self, rank: int) -> str:
        """The customer at `rank` (1 = the hottest)."""
        return customer_id(((rank - 1) * STRIDE) % self._n if self._n % STRIDE else rank - 1)

    def draw(self, k: int) -> list[str]:
        total = self._cum[-1]
        cum, rng, n = self._cum, self._rng, self._n
        ranks = [min(n, bisect.bisect_left(cum, rng.random() * total) + 1) for _ in range(k)]
        return [self.rank_id(r) for r in ranks]

    def hot(self, k: int) -> Sequence[str]:
        return [self.rank_id(r) for r in range(1, min(k, self._n) + 1)]

    def uniform(self) -> Iterator[str]:
        rng = random.Random(2)
        while True:
            yield customer_id(rng.randrange(self._n))
