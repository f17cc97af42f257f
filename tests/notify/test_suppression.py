"""No alert fatigue: digests, durability of held alerts, dedupe, mutes, spacing, kinds filter,
per-endpoint secrets. The notifier's clock is driven; nothing sleeps through a window."""

from __future__ import annotations

import asyncio
import itertools

from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gatekeeper.model import Enforcement
from gatekeeper.notify import (
    AlertMutes,
    DeliveryOutcome,
    MemoryDeliveryLog,
    RedisDeliveryLog,
    generate_secret,
    verify,
)
from gatekeeper.store.keys import KeySpace
from tests.engine.harness import make_harness
from tests.engine.policies import metered, plan, policy
from tests.notify.helpers import customers_policy, endpoint, make_notifier, req, wall_clock
from tests.notify.receiver import WebhookReceiver

TWENTY = tuple(range(5, 101, 5))  # 20 thresholds: 5 %, 10 %, ... 100 %


async def _twenty_alerts(redis: Redis, prefix: str, customer: str = "acme") -> list[str]:
    h = make_harness(redis, customers_policy([customer], limit=100, thresholds=TWENTY), prefix)
    for _ in range(20):
        assert (await h.engine.decide(req(customer, 5))).allowed
    return [a["id"] for a in await h.alerts(customer)]


async def test_twenty_alerts_in_a_window_arrive_as_first_plus_one_digest(
    redis: Redis, key_prefix: str
) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        rx = await WebhookReceiver([secret]).start()
        clock = wall_clock()
        n = make_notifier(
            redis, key_prefix, [endpoint(rx.url, secret)], clock=clock, digest_window_s=60
        )
        try:
            ids = await _twenty_alerts(redis, key_prefix)
            assert len(ids) == 20
            await n.drain()
            assert [a.json()["id"] for a in rx.requests] == [ids[0]]  # the first at once
            clock.advance(59)
            await n.drain()
            assert len(rx.requests) == 1 and n.backlog == 19
            clock.advance(1)
            await n.drain()
            assert len(rx.requests) == 2 and n.backlog == 0
            digest = rx.requests[1]
            body = digest.json()
            assert body["type"] == "gatekeeper.alert.digest" and body["version"] == 1
            assert body["customer"] == "acme" and digest.webhook_id == body["id"]
            assert [a["id"] for a in body["alerts"]] == ids[1:]
            assert [a["threshold"] for a in body["alerts"]] == list(TWENTY[1:])
            assert body["window"]["end"] > body["window"]["start"]
            verify(digest.headers, digest.body, [secret], now=clock.now())
            assert rx.rejected == []  # the reference verifier accepted both
        finally:
            await n.aclose()
            await rx.stop()


async def test_held_digest_alerts_survive_a_restart_and_a_takeover(
    redis: Redis, key_prefix: str
) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        rx = await WebhookReceiver([secret]).start()
        clock = wall_clock()
        hooks = [endpoint(rx.url, secret)]
        first = make_notifier(redis, key_prefix, hooks, clock=clock, digest_window_s=60)
        try:
            ids = await _twenty_alerts(redis, key_prefix)
            await first.drain()
            await first.aclose()  # the process stops mid-window: 19 alerts pending, unacked
            again = make_notifier(redis, key_prefix, hooks, clock=clock, digest_window_s=60)
            clock.advance(20)
            await again.drain()  # same consumer name: re-reads its pending entries, holds them
            assert len(rx.requests) == 1 and again.backlog == 19
            await again.aclose()  # ... and dies too
            await asyncio.sleep(0.01)  # let the entries be idle for reclaim_idle_ms
            other = make_notifier(
                redis,
                key_prefix,
                hooks,
                clock=clock,
                digest_window_s=60,
                consumer="n2",
                reclaim_idle_ms=5,
            )
            clock.advance(20)
            await other.drain()  # takes the dead consumer's entries over (XAUTOCLAIM)
            assert len(rx.requests) == 1 and other.backlog == 19
            clock.advance(20)  # the window (opened by the first alert) ends
            await other.drain()
            await other.aclose()
            assert len(rx.requests) == 2
            assert [a["id"] for a in rx.requests[1].json()["alerts"]] == ids[1:]
            assert set(rx.arrivals.values()) == {1}
        finally:
            await rx.stop()


async def test_the_same_alert_id_is_never_delivered_twice_to_an_endpoint(
    redis: Redis, key_prefix: str
) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        rx = await WebhookReceiver([secret]).start()
        log = MemoryDeliveryLog()
        n = make_notifier(
            redis, key_prefix, [endpoint(rx.url, secret)], clock=wall_clock(), log=log
        )
        try:
            h = make_harness(redis, customers_policy(["acme"]), key_prefix)
            await h.engine.decide(req("acme", 30))
            await n.drain()
            # the same alert appended again (a replayed or duplicated entry): not sent again
            _, fields = (await redis.xrange(h.alert_stream("acme")))[0]
            await redis.xadd(h.alert_stream("acme"), fields)
            await n.drain()
            assert len(rx.requests) == 1
            assert log.records[-1].outcome is DeliveryOutcome.SUPPRESSED
            assert log.records[-1].error == "already delivered to every endpoint"
        finally:
            await n.aclose()
            await rx.stop()


async def test_muted_kinds_are_acked_and_logged_not_delivered(
    redis: Redis, key_prefix: str
) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        rx = await WebhookReceiver([secret]).start()
        keys = KeySpace(prefix=key_prefix)
        log = RedisDeliveryLog(redis=redis, keys=keys)
        n = make_notifier(
            redis, key_prefix, [endpoint(rx.url, secret)], clock=wall_clock(), log=log
        )
        mutes = AlertMutes(redis=redis, keys=keys)
        try:
            await mutes.mute("acme", ["threshold", "overage"])
            assert await mutes.muted("acme") == {"threshold", "overage"}
            h = make_harness(redis, customers_policy(["acme", "zed"]), key_prefix)
            await h.engine.decide(req("acme", 30))  # 50 % for acme: muted
            await h.engine.decide(req("zed", 30))  # 50 % for zed: delivered
            await n.drain()
            assert [a.json()["customer"] for a in rx.requests] == ["zed"]
            assert n.suppressed == 1 and n.backlog == 0
            await mutes.unmute("acme", ["threshold"])
            await h.engine.decide(req("acme", 10))  # 80 %: delivered now
            await n.drain()
            assert [a.json()["threshold"] for a in rx.requests[1:]] == [80]
            records = [
                {k.decode(): v.decode() for k, v in f.items()}
                for _, f in await redis.xrange(keys.delivery_log())
            ]
            assert [(r["customer"], r["outcome"], r["error"]) for r in records] == [
                ("acme", "suppressed", "muted"),
                ("zed", "delivered", ""),
                ("acme", "delivered", ""),
            ]
            assert all(float(r["latency_ms"]) >= 0 for r in records)
            await mutes.unmute("acme")
            assert await mutes.muted("acme") == frozenset()
        finally:
            await n.aclose()
            await rx.stop()


async def test_min_interval_spaces_deliveries_to_one_endpoint(
    redis: Redis, key_prefix: str
) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        rx = await WebhookReceiver([secret]).start()
        clock = wall_clock()
        log = MemoryDeliveryLog()
        n = make_notifier(
            redis, key_prefix, [endpoint(rx.url, secret)], clock=clock, log=log, min_interval_s=10
        )
        try:
            h = make_harness(redis, customers_policy(["a", "b", "c"]), key_prefix)
            for c in ("a", "b", "c"):
                await h.engine.decide(req(c, 30))
            await n.drain()
            assert len(rx.requests) == 1
            clock.advance(9.9)
            await n.drain()
            assert len(rx.requests) == 1
            clock.advance(0.1)
            await n.drain()
            assert len(rx.requests) == 2
            clock.advance(10)
            await n.drain()
            assert sorted(a.json()["customer"] for a in rx.requests) == ["a", "b", "c"]
            starts = [r.time for r in log.records]  # attempt starts, on the driven clock
            assert [(b - a).total_seconds() for a, b in itertools.pairwise(starts)] == [10, 10]
        finally:
            await n.aclose()
            await rx.stop()


async def test_kinds_filter_and_per_endpoint_secrets(redis: Redis, key_prefix: str) -> None:
    async with asyncio.timeout(30):
        secret_a, secret_b = generate_secret(), generate_secret()
        ops = await WebhookReceiver([secret_a]).start()  # wants overage alerts only
        everything = await WebhookReceiver([secret_b]).start()
        hooks = [
            endpoint(ops.url, secret_a, kinds=("overage",)),
            endpoint(everything.url, secret_b),
        ]
        n = make_notifier(redis, key_prefix, hooks, clock=wall_clock())
        try:
            soft = plan(
                "p", metered("requests", 10, enforcement=Enforcement.SOFT, thresholds=(50,))
            )
            h = make_harness(redis, policy(soft, customer="acme"), key_prefix)
            await h.engine.decide(req("acme", 12))  # 50 % threshold and overage at once
            await n.drain()
            assert [a.json()["type"] for a in ops.requests] == ["gatekeeper.alert.overage"]
            assert sorted(a.json()["type"] for a in everything.requests) == [
                "gatekeeper.alert.overage",
                "gatekeeper.alert.threshold",
            ]
            delivery = ops.requests[0]
            try:  # signed with the endpoint's own secret only
                Webhook(secret_b).verify(delivery.body, delivery.headers)
                raise AssertionError("verified with another endpoint's secret")
            except WebhookVerificationError:
                pass
        finally:
            await n.aclose()
            await ops.stop()
            await everything.stop()
