"""A customer's own webhook endpoint (added through the API) receives that customer's alerts,
signed with the secret the API showed once, and nobody else's; removing it stops deliveries."""

from __future__ import annotations

import asyncio

from gatekeeper.engine.types import DecisionRequest, MeterRequest
from gatekeeper.notify import verify
from gatekeeper.pipeline.forwarding import build_notifier
from gatekeeper.settings import AlertSettings
from gatekeeper.store import KeySpace
from tests.api.conftest import Api, key_of
from tests.notify.receiver import WebhookReceiver


async def test_customer_webhook_gets_only_its_own_alerts(api: Api) -> None:
    assert api.app.redis is not None and api.app.engine is not None
    rx = WebhookReceiver(secrets=[])
    await rx.start()
    try:
        status, hook = await api.call(
            "POST", "/v1/customers/hobbyist/webhooks", token=key_of("hobbyist"),
            body={"url": rx.url, "kinds": ["threshold"]},
        )  # fmt: skip
        assert status == 201 and hook["secret"].startswith("whsec_")
        rx.secrets.append(hook["secret"])
        status, listed = await api.call("GET", "/v1/customers/hobbyist/webhooks")
        assert hook["secret"] not in str(listed) and listed["webhooks"][0]["url"] == rx.url
        settings = api.app.config.settings
        notifier = build_notifier(
            AlertSettings(digest_window_s=1), {}, redis=api.app.redis.client,
            keys=KeySpace(prefix=settings.redis.key_prefix, partitions=settings.redis.partitions),
            consumer="test", policy=api.app.policy,
        )  # fmt: skip
        assert notifier is not None
        # hobbyist: free plan, 5 chats a day, alerts at 80 and 100 %; busy has no thresholds
        # but thrifty and others cross nothing either — so the receiver sees hobbyist's only.
        for customer in ("hobbyist", "busy"):
            for _ in range(5):
                await api.app.engine.decide(
                    DecisionRequest(customer, meters=(MeterRequest("chat_requests", 1),))
                )
        for _ in range(100):
            await notifier.run_once(block_ms=20)
            if len(rx.requests) >= 2:
                break
        bodies = [r.json() for r in rx.requests]
        assert sorted(b["threshold"] for b in bodies) == [80, 100], bodies
        assert {b["customer"] for b in bodies} == {"hobbyist"}
        for arrival in rx.requests:
            verify(arrival.headers, arrival.body, [hook["secret"]], now=arrival.at_wall)
        assert rx.rejected == []
        status, _ = await api.call(
            "DELETE", f"/v1/customers/hobbyist/webhooks/{hook['id']}", token=key_of("hobbyist")
        )
        assert status == 204
        await notifier.aclose()
    finally:
        await rx.stop()
    await asyncio.sleep(0)
