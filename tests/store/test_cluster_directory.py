"""The catalog's WATCH/MULTI change on a real Cluster: written in the {ctl} slot, with its
invalidation published (a Cluster transaction refuses a bare PUBLISH)."""

from __future__ import annotations

import asyncio
import uuid

from gatekeeper.settings import RedisSettings
from gatekeeper.store.connection import connect_redis
from gatekeeper.store.directory import INVALIDATE_DIRECTORY, DirectoryStore, Mutation
from gatekeeper.store.keys import KeySpace
from gatekeeper.store.localcluster import LocalCluster


async def test_a_change_commits_and_its_invalidation_reaches_subscribers(
    redis_cluster: LocalCluster,
) -> None:
    client = connect_redis(redis_cluster.seeds, RedisSettings(cluster=True))
    keys = KeySpace(prefix=f"gkt-{uuid.uuid4().hex[:8]}")
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(keys.invalidate_channel())
        store = DirectoryStore(redis=client, keys=keys)
        result = await store.change(lambda _: Mutation(result="done", plans={"p": {"x": 1}}))
        assert result == "done"
        assert (await store.load()).plans["p"] == {"x": 1}
        got = []
        async with asyncio.timeout(5):
            while not got:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if message is not None:
                    got.append(message["data"])
        assert got == [INVALIDATE_DIRECTORY.encode()]
    finally:
        await pubsub.aclose()
        await client.delete(keys.directory_plans(), keys.audit_stream())
        await client.aclose()
