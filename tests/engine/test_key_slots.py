"""Every key a decision or settlement script touches hashes to one Redis Cluster slot."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from gatekeeper.engine import DecisionRequest, MeterRequest
from gatekeeper.model import Enforcement, RateUnit
from gatekeeper.store.scripts import LuaScript
from tests.engine.harness import START, make_harness
from tests.engine.policies import cap, grant, metered, plan, policy, rate, tiered


def crc16_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    """Redis Cluster slot: CRC16 of the hash tag (first non-empty {...}) or the whole key."""
    raw = key.encode()
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16_xmodem(raw) % 16384


def test_crc16_matches_the_cluster_spec_vectors() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3
    assert key_slot("foo") == 12182
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")


async def test_all_script_keys_share_one_slot(
    redis: Redis, key_prefix: str, monkeypatch: Any
) -> None:
    seen: list[list[str]] = []
    for method in ("run", "run_pipelined"):  # redis-py path, auto-pipelined path
        original = getattr(LuaScript, method)

        async def spy(
            self: LuaScript,
            client: Any,
            keys: Sequence[str],
            args: Sequence[str | int],
            _original: Any = original,
            **options: Any,
        ) -> Any:
            seen.append(list(keys))
            return await _original(self, client, keys, args, **options)

        monkeypatch.setattr(LuaScript, method, spy)
    p = plan(
        "p",
        metered("requests", 100, thresholds=(50,)),
        metered("tokens", 10_000, enforcement=Enforcement.SOFT),
        rates=(rate("requests", 10), rate("tokens", 100_000, RateUnit.MINUTE)),
        spend_cap=cap(10**12),
    )
    pol = policy(
        p,
        prices=(tiered("tokens", (1000, 5), (None, 2)),),
        grants=(grant("g", "tokens", 100, START + timedelta(days=3)),),
    )
    for customer in ("cust",):
        h = make_harness(redis, pol, key_prefix, partitions=64)
        d = await h.engine.decide(
            DecisionRequest(
                customer,
                meters=(MeterRequest("requests", 1), MeterRequest("tokens", 500, reserve=True)),
                idempotency_key="idem-1",
            )
        )
        assert d.allowed
        await h.engine.settle(customer, d.decision_id, {"tokens": 700})
    assert len(seen) == 2
    for keys in seen:
        assert len(keys) >= 9
        assert len({key_slot(k) for k in keys}) == 1, keys
    stored = [k.decode() async for k in redis.scan_iter(match=f"{key_prefix}:*")]
    assert len({key_slot(k) for k in stored}) == 1


def test_customers_spread_over_partitions() -> None:
    from gatekeeper.store.keys import KeySpace

    ks = KeySpace(partitions=16)
    partitions = {ks.partition(f"customer-{i}") for i in range(500)}
    assert partitions == set(range(16))
    assert ks.partition("acme") == ks.partition("acme")  # stable across calls and processes
