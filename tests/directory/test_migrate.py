"""Customers and own caps an older gatekeeper kept in whole-directory hashes become records,
once, on top of the policy file's seed."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from gatekeeper.config import parse_config
from gatekeeper.directory.seed import reconcile_directory
from gatekeeper.store.customers import CustomerRecords, Source
from gatekeeper.store.keys import KeySpace
from tests.conftest import also_on_cluster

FILE = parse_config(
    """
version: 1
currency: USD
features:
  api_access: {type: boolean}
plans:
  pro: {entitlements: {api_access: true}, spend_cap: {amount: "100.00"}}
customers:
  acme: {plan: pro}
  initech: {plan: pro}
  hooli: {plan: pro}
""",
    env={},
)


@also_on_cluster()
async def test_old_hashes_move_into_records_once(redis: Redis, key_prefix: str) -> None:
    keys = KeySpace(prefix=key_prefix, partitions=4)
    records = CustomerRecords(redis=redis, keys=keys)
    await redis.hset(
        keys.directory_customers(),
        mapping={
            "newco": json.dumps({"plan": "pro", "description": "made through the API"}),
            "hooli": json.dumps(None),  # the API removed this file customer
        },
    )
    await redis.hset(
        keys.spend_cap_overrides(),
        mapping={"acme": json.dumps({"amount_nano": 25_000_000_000, "action": "block"})},
    )
    hook = {"id": "wh-1", "url": "https://example.com/h", "kinds": [], "secret": "whsec_x"}
    await redis.hset(keys.customer_webhooks(), mapping={"initech": json.dumps([hook])})
    for _ in range(2):  # the second start finds nothing left to move
        await reconcile_directory(
            redis=redis, keys=keys, records=records, root=FILE.root, updated_at="2026-12-07"
        )
        newco, acme = await records.get("newco"), await records.get("acme")
        assert newco is not None and newco.source is Source.API
        assert newco.doc["description"] == "made through the API"
        assert acme is not None and acme.doc["spend_cap"] == {"amount": "25.00", "action": "block"}
        assert await records.get("hooli") is None
        initech = await records.get("initech")
        assert initech is not None and initech.webhooks == (hook,)
    assert not await redis.exists(
        keys.directory_customers(), keys.spend_cap_overrides(), keys.customer_webhooks()
    )
    assert await redis.exists(keys.directory_customers() + ":migrated")
