"""LiveDirectory's counts, as `/metrics` shows them: one lookup is one hit or one miss."""

from __future__ import annotations

import dataclasses

from redis.asyncio import Redis

from gatekeeper.config.loader import parse_config
from gatekeeper.directory import LiveDirectory
from gatekeeper.model import frozen_map
from gatekeeper.store.customers import CustomerRecord, CustomerRecords, Source
from gatekeeper.store.keys import KeySpace

CATALOG = """\
version: 1
currency: USD
features:
  requests: {type: metered, unit: request}
plans:
  basic:
    entitlements:
      requests: {limit: 100, period: day}
"""


def _sha(i: int) -> str:
    return f"{i:064x}"


async def _directory(redis: Redis, prefix: str, capacity: int) -> LiveDirectory:
    keys = KeySpace(prefix=prefix, partitions=4)
    records = CustomerRecords(redis=redis, keys=keys)
    docs = [
        CustomerRecord(f"c{i}", {"plan": "basic", "api_keys": [{"id": "k", "sha256": _sha(i)}]},
                       Source.API)
        for i in range(3)
    ]  # fmt: skip
    assert len(await records.put_many(docs, channel=keys.invalidate_channel())) == 3
    catalog = dataclasses.replace(parse_config(CATALOG).policy, customers=frozen_map())
    return LiveDirectory(catalog=catalog, records=records, capacity=capacity)


async def test_a_lookup_counts_once_as_a_hit_or_a_miss(redis: Redis, key_prefix: str) -> None:
    directory = await _directory(redis, key_prefix, capacity=2)

    assert directory.cached_key_owner(_sha(0)) is None  # not held: the awaited path counts
    owner = await directory.key_owner(_sha(0))
    assert owner is not None and owner[0].id == "c0"
    assert (directory.stats().hits, directory.stats().misses) == (0, 1)

    assert directory.cached_key_owner(_sha(0)) is not None
    assert directory.cached_customer("c0") is not None
    assert (await directory.customer("c0")) is not None
    assert (directory.stats().hits, directory.stats().misses) == (3, 1)

    assert await directory.customer("nobody") is None  # a miss, remembered as absent
    assert await directory.customer("nobody") is None  # then a hit
    assert (directory.stats().hits, directory.stats().misses) == (4, 2)

    directory.invalidate("c0")
    await directory.customer("c0")
    await directory.customer("c1")  # a third customer in a cache of 2: the oldest goes
    stats = directory.stats()
    assert (stats.hits, stats.misses, stats.size, stats.capacity) == (4, 4, 2, 2)
    assert stats.evictions == 1 and stats.compile_failures == 0
