"""The digest window remembers the alert that opened it (notify/state.py open_window)."""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio import Redis

from gatekeeper.notify.state import NotifyState
from gatekeeper.store.keys import KeySpace
from tests.engine.harness import START


async def test_the_opening_alert_routed_again_still_opens_it(redis: Redis, key_prefix: str) -> None:
    state = NotifyState(redis=redis, keys=KeySpace(prefix=key_prefix), dedupe_ttl_s=60)
    opened, end = await state.open_window("c", START, 60.0, "a1")
    assert opened
    # a1 taken over from a stopped notifier and routed again: still the window's first
    assert await state.open_window("c", START + timedelta(seconds=5), 60.0, "a1") == (True, end)
    # a later alert of the customer within the window: held for the digest
    assert await state.open_window("c", START + timedelta(seconds=5), 60.0, "a2") == (False, end)
    # after the window, the next alert opens a new one
    later = START + timedelta(seconds=61)
    assert (await state.open_window("c", later, 60.0, "a2"))[0]
