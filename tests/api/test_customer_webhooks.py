"""A customer's own webhook endpoint (added through the API) receives that customer's alerts,
signed with the secret the API showed once, and nobody else's; removing it stops deliveries.
Endpoints on internal addresses are refused (SSRF) unless the operator allows them
(`alerts.allow_private_customer_webhooks`, which the delivery test turns on: its receiver
listens on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gatekeeper.engine.types import DecisionRequest, MeterRequest
from gatekeeper.notify import verify
from gatekeeper.pipeline.forwarding import build_notifier
from gatekeeper.settings import AlertSettings
from gatekeeper.store import KeySpace
from gatekeeper.store.embedded import EmbeddedRedis
from tests.api.conftest import Api, key_of, start_app
from tests.notify.receiver import WebhookReceiver

INTERNAL = [
    "http://127.0.0.1:29777/ssrf-from-customer",
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost:8080/hooks",
    "http://[::1]:8080/hooks",
    "http://10.0.0.5/hooks",
    "http://192.168.1.10/hooks",
    "http://[fe80::1]/hooks",
    "http://[fd00::1]/hooks",
    "http://0.0.0.0:9/hooks",
    "http://224.0.0.1/hooks",
    "http://127.1/hooks",
    "http://[::ffff:127.0.0.1]/hooks",
]


@pytest.fixture
async def private_api(
    embedded_redis: EmbeddedRedis, key_prefix: str, tmp_path: Path
) -> AsyncIterator[Api]:
    """The API with `alerts.allow_private_customer_webhooks` on (set by its variable)."""
    app = await start_app(
        embedded_redis.url, key_prefix, str(tmp_path / "billing.sqlite"),
        extra_env={"GATEKEEPER_ALERTS_ALLOW_PRIVATE_CUSTOMER_WEBHOOKS": "true"},
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(app, session, f"http://127.0.0.1:{app.http_port}")
    finally:
        await app.stop(0)


async def test_customer_webhooks_on_internal_addresses_are_refused(api: Api) -> None:
    for token in (key_of("hobbyist"), None):  # the customer, and the operator on its behalf
        kwargs = {} if token is None else {"token": token}
        for url in INTERNAL:
            status, problem = await api.call(
                "POST", "/v1/customers/hobbyist/webhooks", body={"url": url}, **kwargs
            )
            assert status == 422, (url, problem)
            assert [e["field"] for e in problem["errors"]] == ["url"], problem
            assert "internal address" in problem["detail"], problem
    status, listed = await api.call("GET", "/v1/customers/hobbyist/webhooks")
    assert listed["webhooks"] == []
    status, hook = await api.call(
        "POST", "/v1/customers/hobbyist/webhooks", token=key_of("hobbyist"),
        body={"url": "https://hooks.example.com/gatekeeper"},
    )  # fmt: skip
    assert status == 201, hook


async def test_customer_webhook_gets_only_its_own_alerts(private_api: Api) -> None:
    api = private_api
    assert api.app.config.settings.alerts.allow_private_customer_webhooks
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
            AlertSettings(digest_window_s=1, allow_private_customer_webhooks=True), {},
            redis=api.app.redis.client,
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
