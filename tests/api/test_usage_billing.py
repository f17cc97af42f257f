"""Usage, forecast, events, invoices, revenue and alerts as the API shows them, from real
decisions (the authz fast path) billed by the real worker into the SQLite store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from gatekeeper.billing.periods import BillingCalendar
from gatekeeper.clock import SystemClock
from gatekeeper.engine.types import DecisionRequest, MeterRequest
from gatekeeper.events import AlertEvent, AlertKind
from gatekeeper.pipeline.alert_log import AlertLog
from gatekeeper.pipeline.worker import BillingWorker, WorkerOptions
from gatekeeper.store import KeySpace
from gatekeeper.store.embedded import EmbeddedRedis
from tests.api.conftest import Api, key_of, start_app
from tests.api.test_admin import authz
from tests.conftest import also_on_cluster


async def bill(api: Api) -> int:
    """Run the billing worker over the app's streams into the app's store until drained."""
    store = await api.app.billing_store()
    assert api.app.redis is not None and store is not None
    settings = api.app.config.settings.redis
    worker = BillingWorker(
        redis=api.app.redis.client,
        store=store,
        keys=KeySpace(prefix=settings.key_prefix, partitions=settings.partitions),
        calendar=BillingCalendar(api.app.policy),
        clock=SystemClock(),
        options=WorkerOptions(batch=50, block_ms=10, trim_interval_s=0),
    )
    await worker.ensure_groups()
    return await worker.drain()


@also_on_cluster("app_target")
async def test_usage_events_invoice_revenue(api: Api) -> None:
    for _ in range(7):
        await authz(api.app, key_of("busy"))
    status, usage = await api.call("GET", "/v1/customers/busy/usage", token=key_of("busy"))
    assert status == 200
    chat = next(f for f in usage["features"] if f["feature"] == "chat_requests")
    assert (chat["used"], chat["limit"], chat["remaining"], chat["kind"]) == (7, 50, 43, "quota")
    assert chat["reset"].endswith("Z") and usage["currency"] == "USD"
    assert await bill(api) > 0

    pages, cursor = [], None
    while True:
        params = {"limit": "3", "feature": "chat_requests"}
        if cursor:
            params["cursor"] = cursor
        status, page = await api.call("GET", "/v1/customers/busy/events", **params)
        assert status == 200, page
        pages.append(page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    events = [e for p in pages for e in p]
    assert len(events) == 7 and len({e["id"] for e in events}) == 7
    assert all(e["amount"] == "0.002" and e["quantity"] == 1 for e in events)
    assert [len(p) for p in pages] == [3, 3, 1]

    status, invoice = await api.call("GET", "/v1/customers/busy/invoice")
    assert status == 200
    line = next(x for x in invoice["lines"] if x["feature"] == "chat_requests")
    assert (line["quantity"], line["amount"]) == (7, "0.014")
    status, revenue = await api.call("GET", "/v1/customers/busy/revenue")
    assert status == 200 and revenue["total"] == invoice["total"]
    status, forecast = await api.call("GET", "/v1/customers/busy/forecast")
    assert status == 200
    projection = next(f for f in forecast["features"] if f["feature"] == "chat_requests")
    assert projection["used"] == 7 and projection["projected"] >= 7
    assert projection["enforcement"] == "block"  # a hard daily quota: refused, never billed over
    assert projection["outlook"] in ("within_limit", "blocked")
    assert (projection["outlook"] == "blocked") == (projection["projected"] >= 50)

    status, problem = await api.call("GET", "/v1/customers/busy/events", cursor="garbage!")
    assert status == 422 and problem["errors"][0]["field"] == "cursor"
    status, problem = await api.call("GET", "/v1/customers/busy/events", since="yesterday")
    assert status == 422 and problem["errors"][0]["field"] == "since"


async def test_spend_shows_money_against_the_cap(api: Api) -> None:
    assert api.app.engine is not None
    decision = await api.app.engine.decide(
        DecisionRequest("spender", meters=(MeterRequest("chat_requests", 1),))
    )
    assert decision.allowed
    status, usage = await api.call("GET", "/v1/customers/spender/usage")
    assert status == 200
    assert usage["spend"] == {
        "spent": "0.002",
        "cap": "1.00",
        "remaining": "0.998",
        "reset": usage["spend"]["reset"],
        "currency": "USD",
        "action": "block",
    }


async def test_alerts_newest_first(api: Api) -> None:
    store = await api.app.billing_store()
    assert store is not None
    now = datetime.now(UTC).replace(microsecond=0)
    for i, threshold in enumerate((80, 100)):
        await store.insert_alert(
            AlertEvent(
                id=f"al-{i}", kind=AlertKind.THRESHOLD, customer="hobbyist", plan="free",
                feature="chat_requests", threshold=threshold, used=4 + i, limit=5,
                period_start=now, period_end=now, time=now.replace(second=i),
                decision_id=f"d{i}",
            ),
            delivered_at=None,
        )  # fmt: skip
    status, alerts = await api.call(
        "GET", "/v1/customers/hobbyist/alerts", token=key_of("hobbyist")
    )
    assert status == 200
    assert [a["threshold"] for a in alerts["alerts"]] == [100, 80]
    assert (await api.call("GET", "/v1/customers/busy/alerts"))[1]["alerts"] == []


async def test_redis_down_answers_503_not_500(key_prefix: str, tmp_path: Path) -> None:
    server = EmbeddedRedis().start()
    app = await start_app(server.url, key_prefix, str(tmp_path / "b.sqlite"))
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(app, session, f"http://127.0.0.1:{app.http_port}")
            assert (await api.call("GET", "/v1/customers/busy/usage"))[0] == 200
            server.stop()
            status, problem = await api.call("GET", "/v1/customers/busy/usage")
            assert status == 503, problem
            assert problem["title"] == "Unavailable"
            status, problem = await api.call("POST", "/v1/customers/busy/api-keys")
            assert status == 503, problem
    finally:
        await app.stop(0)
        server.stop()


@also_on_cluster("app_target")
async def test_grant_balances_show_what_the_counters_hold(api: Api, key_prefix: str) -> None:
    """Units drawn from a grant come before the plan's limit and are not in the feature's
    `used`: the usage view shows each grant's balance, read from the grant's own counter."""
    assert api.app.engine is not None and api.app.redis is not None
    status, created = await api.call(
        "POST",
        "/v1/customers",
        body={
            "id": "granted",
            "plan": "free",
            "grants": [
                {"id": "promo", "feature": "chat_requests", "amount": 3},
                {
                    "id": "trial",
                    "feature": "llm_tokens",
                    "amount": 1000,
                    "expires_at": "2099-01-01T00:00:00Z",
                },
            ],
        },
    )
    assert status == 201, created
    for _ in range(4):
        decision = await api.app.engine.decide(
            DecisionRequest("granted", meters=(MeterRequest("chat_requests", 1),))
        )
        assert decision.allowed
    status, usage = await api.call("GET", "/v1/customers/granted/usage")
    assert status == 200, usage
    chat = next(f for f in usage["features"] if f["feature"] == "chat_requests")
    assert chat["used"] == 1  # 3 of the 4 came out of the grant
    grants = {g["id"]: g for g in usage["grants"]}
    assert grants["promo"] == {
        "id": "promo",
        "feature": "chat_requests",
        "amount": 3,
        "used": 3,
        "remaining": 0,
        "expires_at": None,
        "expired": False,
    }
    assert (grants["trial"]["used"], grants["trial"]["remaining"]) == (0, 1000)
    assert grants["trial"]["expires_at"] == "2099-01-01T00:00:00Z"
    keys = KeySpace(prefix=key_prefix, partitions=api.app.config.settings.redis.partitions)
    raw = await api.app.redis.client.hget(keys.grant("granted", "promo"), "u")
    assert int(raw) == grants["promo"]["used"]


async def test_alert_mutes_through_the_api(api: Api, key_prefix: str) -> None:
    """A customer mutes alert kinds for its own endpoints: the set the notifier reads."""
    base = "/v1/customers/hobbyist/alert-mutes"
    status, mutes = await api.call("GET", base, token=key_of("hobbyist"))
    assert status == 200 and mutes["muted"] == [] and "threshold" in mutes["kinds"]
    status, mutes = await api.call(
        "PUT", base, token=key_of("hobbyist"), body={"muted": ["forecast", "anomaly", "forecast"]}
    )
    assert status == 200 and mutes["muted"] == ["anomaly", "forecast"]
    assert api.app.redis is not None
    keys = KeySpace(prefix=key_prefix, partitions=api.app.config.settings.redis.partitions)
    stored = await api.app.redis.client.smembers(keys.alert_mutes("hobbyist"))
    assert {m.decode() for m in stored} == {"anomaly", "forecast"}
    status, problem = await api.call("PUT", base, body={"muted": ["loud"]})
    assert status == 422 and problem["errors"][0]["field"] == "muted"
    status, problem = await api.call("PUT", base, body={"kinds": []})
    assert status == 422
    status, mutes = await api.call("PUT", base, body={"muted": []})
    assert status == 200 and mutes["muted"] == []
    assert await api.app.redis.client.exists(keys.alert_mutes("hobbyist")) == 0


@also_on_cluster("app_target")
async def test_denials_today_are_the_refusals_the_customer_was_answered(api: Api) -> None:
    """The usage view's `denials_today` counts what the ext_authz port refused this customer
    today, by reason, as every serving process flushes it (once a second)."""
    status, _ = await api.call("POST", "/v1/customers", body={"id": "refused", "plan": "free"})
    assert status == 201
    status, issued = await api.call("POST", "/v1/customers/refused/api-keys", body={"id": "k"})
    assert status == 201
    answers = [await authz(api.app, issued["key"]) for _ in range(8)]
    assert answers.count(200) == 5  # the free plan's 5 chat requests a day
    refused = len(answers) - answers.count(200)
    deadline = asyncio.get_running_loop().time() + 5
    while True:  # flushed within a second or so
        status, usage = await api.call("GET", "/v1/customers/refused/usage")
        assert status == 200, usage
        if usage["denials_today"]["total"] == refused:
            break
        assert asyncio.get_running_loop().time() < deadline, usage["denials_today"]
        await asyncio.sleep(0.2)
    today = datetime.now(UTC).date().isoformat()
    assert usage["denials_today"] == {"date": today, "total": 3, "by_reason": {"quota": 3}}
    status, other = await api.call("GET", "/v1/customers/busy/usage")
    assert status == 200 and other["denials_today"]["total"] == 0


async def test_absolute_alert_points_through_the_api(api: Api) -> None:
    """A customer sets a unit count and a money amount to be told at (beside percentages);
    decisions cross them; each alert is logged once and read back with its point."""
    status, problem = await api.call(
        "PUT", "/v1/customers/busy/alert-thresholds", token=key_of("busy"),
        body={"features_at": {"chat_requests": [3, 2]}},
    )  # fmt: skip
    assert status == 422 and problem["errors"][0]["field"] == "features_at.chat_requests"
    status, problem = await api.call(
        "PUT", "/v1/customers/busy/alert-thresholds", token=key_of("busy"),
        body={"spend_at": ["0"]},
    )  # fmt: skip
    assert status == 422 and problem["errors"][0]["field"] == "spend_at", problem
    status, view = await api.call(
        "PUT", "/v1/customers/busy/alert-thresholds", token=key_of("busy"),
        body={"features_at": {"chat_requests": [3]}, "spend_at": ["0.009"]},
    )  # fmt: skip
    assert status == 200, view
    assert view["features_at"]["chat_requests"] == [3] and view["spend_at"] == ["0.009"]
    for _ in range(4):  # 0.002 + reserved tokens a request; 3 requests pass both points
        assert await authz(api.app, key_of("busy")) == 200
    points = await AlertLogDrain(api).until(2)
    assert sorted((a["feature"] or "", a["alert_at"]) for a in points) == [
        ("", "0.009"),  # the spend point, in money like `used`
        ("chat_requests", 3),
    ]
    assert all(a["kind"] == "threshold" and a["threshold"] == 0 for a in points)


class AlertLogDrain:
    """Runs the worker's alert log over the app's alert streams, then reads the API."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def until(self, n: int) -> list[dict[str, object]]:
        store = await self.api.app.billing_store()
        assert self.api.app.redis is not None and store is not None
        settings = self.api.app.config.settings.redis
        log = AlertLog(
            redis=self.api.app.redis.client,
            store=store,
            keys=KeySpace(prefix=settings.key_prefix, partitions=settings.partitions),
            consumer="test",
            block_ms=10,
        )
        await log.ensure_groups()
        for _ in range(50):
            await log.run_once(block_ms=10)
            status, alerts = await self.api.call(
                "GET", "/v1/customers/busy/alerts", token=key_of("busy")
            )
            assert status == 200
            found = [a for a in alerts["alerts"] if a["alert_at"] is not None]
            if len(found) >= n:
                return found
        raise AssertionError(f"fewer than {n} absolute-point alerts logged: {alerts}")
