"""Retries, backoff, Retry-After, receiver outages and the dead letter (manual clock: the
notifier is driven pass by pass with `drain()`, nothing sleeps through a backoff)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from gatekeeper.notify import (
    GROUP,
    DeliveryOutcome,
    MemoryDeliveryLog,
    endpoints_from_settings,
    generate_secret,
    verify,
)
from gatekeeper.settings import AlertSettings, WebhookSettings
from gatekeeper.store.keys import KeySpace
from tests.engine.harness import make_harness
from tests.notify.helpers import customers_policy, endpoint, make_notifier, req, wall_clock
from tests.notify.receiver import WebhookReceiver


async def _alerts(redis: Redis, prefix: str, customer: str = "acme", units: int = 40) -> None:
    """One decision of `units` of 50: crosses 50 % and (at 40) 80 %."""
    h = make_harness(redis, customers_policy([customer]), prefix)
    assert (await h.engine.decide(req(customer, units))).allowed


async def _pending(redis: Redis, prefix: str) -> int:
    total = 0
    for stream in KeySpace(prefix=prefix).all_alert_streams():
        if await redis.exists(stream):
            total += (await redis.xpending(stream, GROUP))["pending"]
    return total


async def test_receiver_down_then_back_gets_each_alert_once(redis: Redis, key_prefix: str) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        rx = await WebhookReceiver([secret], statuses=[500, 500]).start()
        clock, log = wall_clock(), MemoryDeliveryLog()
        n = make_notifier(redis, key_prefix, [endpoint(rx.url, secret)], clock=clock, log=log)
        try:
            await _alerts(redis, key_prefix)
            await n.drain()  # attempt 1: HTTP 500 for both alerts
            assert [a.status for a in rx.requests] == [500, 500] and not rx.accepted
            await rx.stop()  # now the port refuses connections
            for _ in range(2):  # attempts 2 and 3: connection refused
                clock.advance(2)
                await n.drain()
            assert await _pending(redis, key_prefix) == 2  # nothing acked while undelivered
            await rx.start()  # back on the same port
            clock.advance(2)
            await n.drain()
            assert len(rx.accepted) == 2 and set(rx.arrivals.values()) == {1}
            for arrival in rx.accepted.values():
                verify(arrival.headers, arrival.body, [secret], now=clock.now())
            clock.advance(60)
            await n.drain()  # nothing more goes out
            assert len(rx.requests) == 4 and await _pending(redis, key_prefix) == 0
            by_id: dict[str, list[tuple[int, DeliveryOutcome, int | None]]] = {}
            for r in log.records:
                by_id.setdefault(r.webhook_id, []).append((r.attempt, r.outcome, r.status))
            for attempts in by_id.values():
                assert [a[:2] for a in attempts] == [
                    (1, DeliveryOutcome.RETRY),
                    (2, DeliveryOutcome.RETRY),
                    (3, DeliveryOutcome.RETRY),
                    (4, DeliveryOutcome.DELIVERED),
                ]
                assert [a[2] for a in attempts] == [500, None, None, 204]
            # the same webhook-id on every attempt; a fresh timestamp and signature each time
            ids = {a.webhook_id for a in rx.requests}
            assert len(ids) == 2
        finally:
            await n.aclose()
            await rx.stop()


async def test_retry_after_is_honoured(redis: Redis, key_prefix: str) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        rx = await WebhookReceiver([secret], statuses=[429], retry_after="7").start()
        clock = wall_clock()
        n = make_notifier(redis, key_prefix, [endpoint(rx.url, secret)], clock=clock)
        try:
            await _alerts(redis, key_prefix, units=30)  # one alert (50 %)
            await n.drain()
            clock.advance(6.5)  # backoff alone would have retried by now (max 1 s)
            await n.drain()
            assert len(rx.requests) == 1
            clock.advance(1)
            await n.drain()
            assert [a.status for a in rx.requests] == [429, 204]
        finally:
            await n.aclose()
            await rx.stop()


async def test_dead_letter_after_max_attempts_and_at_once_on_4xx(
    redis: Redis, key_prefix: str
) -> None:
    async with asyncio.timeout(30):
        secret = generate_secret()
        failing = await WebhookReceiver([secret], statuses=[503] * 10).start()
        gone = await WebhookReceiver([secret], statuses=[410] * 10).start()
        clock, log = wall_clock(), MemoryDeliveryLog()
        hooks = [endpoint(failing.url, secret), endpoint(gone.url, secret)]
        n = make_notifier(redis, key_prefix, hooks, clock=clock, log=log, max_attempts=3)
        try:
            await _alerts(redis, key_prefix, units=30)
            for _ in range(4):
                await n.drain()
                clock.advance(2)
            assert len(failing.requests) == 3 and len(gone.requests) == 1
            keys = KeySpace(prefix=key_prefix)
            dead = await redis.xrange(keys.alert_dead_letter(keys.partition("acme")))
            rows = sorted(
                ({k.decode(): v.decode() for k, v in f.items()} for _, f in dead),
                key=lambda r: r["attempts"],
            )
            assert [(r["endpoint"], r["attempts"], r["last_status"]) for r in rows] == [
                (gone.url, "1", "410"),
                (failing.url, "3", "503"),
            ]
            assert rows[1]["reason"].startswith("gave up after 3 attempts: HTTP 503")
            assert rows[0]["reason"].startswith("HTTP 410")
            alert_id = rows[0]["webhook_id"]
            assert rows[0]["alert_ids"] == alert_id and rows[0]["customer"] == "acme"
            assert f'"id":"{alert_id}"' in rows[0]["body"]
            assert n.dead_lettered == 2 and await _pending(redis, key_prefix) == 0
            assert [r.outcome for r in log.records].count(DeliveryOutcome.DEAD_LETTERED) == 2
        finally:
            await n.aclose()
            await failing.stop()
            await gone.stop()


async def test_unparseable_entry_is_dead_lettered_and_acked(redis: Redis, key_prefix: str) -> None:
    async with asyncio.timeout(30):
        keys = KeySpace(prefix=key_prefix)
        await redis.xadd(keys.alert_stream(3), {"id": "x1", "kind": "bogus", "customer": "c"})
        n = make_notifier(
            redis,
            key_prefix,
            [endpoint("http://127.0.0.1:9/", generate_secret())],
            clock=wall_clock(),
        )
        try:
            await n.drain()
            dead = await redis.xrange(keys.alert_dead_letter(3))
            assert len(dead) == 1 and dead[0][1][b"reason"].startswith(b"unparseable")
            assert await _pending(redis, key_prefix) == 0
        finally:
            await n.aclose()


async def test_an_endpoint_without_its_secret_is_dead_lettered_unsent(
    redis: Redis, key_prefix: str
) -> None:
    """`alerts.webhooks[i].secret_env` names an unset variable: the worker still runs (billing
    must not stop for a webhook), every alert for that endpoint is dead-lettered at once with
    the reason and its body (nothing lost, nothing sent unsigned); other endpoints get theirs."""
    async with asyncio.timeout(30):
        secret = generate_secret()
        signed = await WebhookReceiver([secret]).start()
        unsigned = await WebhookReceiver([secret]).start()
        alerts = AlertSettings(
            webhooks=(
                WebhookSettings(signed.url, "HOOK_SECRET"),
                WebhookSettings(unsigned.url, "UNSET_SECRET"),
            )
        )
        hooks = endpoints_from_settings(alerts, {"HOOK_SECRET": secret})
        clock, log = wall_clock(), MemoryDeliveryLog()
        n = make_notifier(redis, key_prefix, hooks, clock=clock, log=log)
        try:
            await _alerts(redis, key_prefix)  # two alerts: 50 % and 80 %
            for _ in range(3):
                await n.drain()
                clock.advance(2)
            assert len(signed.accepted) == 2 and unsigned.requests == []
            keys = KeySpace(prefix=key_prefix)
            dead = await redis.xrange(keys.alert_dead_letter(keys.partition("acme")))
            rows = [{k.decode(): v.decode() for k, v in f.items()} for _, f in dead]
            assert [(r["endpoint"], r["attempts"]) for r in rows] == [(unsigned.url, "1")] * 2
            for row in rows:
                assert row["reason"].startswith("alerts.webhooks[1].secret_env: ")
                assert "UNSET_SECRET unset" in row["reason"] and row["webhook_id"] in row["body"]
            assert n.dead_lettered == 2 and await _pending(redis, key_prefix) == 0
        finally:
            await n.aclose()
            await signed.stop()
            await unsigned.stop()
