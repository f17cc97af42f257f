"""The /ui dashboard in headless Debian Chromium (Playwright, `executable_path`), real App.

Loads the page with a customer's API key in the URL fragment, reads a usage number, drives
decisions through the ext_authz HTTP path, and sees the number change within 2 s; then the
operator view. Screenshots are kept under test-output/screenshots/ (tests/ui/browser.py).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from gatekeeper.app import App
from gatekeeper.money import format_money, parse_nano
from tests.ui.browser import CHROMIUM, needs_chromium, open_page
from tests.ui.conftest import ADMIN, HOBBYIST_KEY, bill_app, chat, following

pytestmark = needs_chromium

if CHROMIUM.exists():
    from playwright.async_api import BrowserContext, expect


async def test_customer_view_updates_live(
    app: App, browser: BrowserContext, screenshots: Path
) -> None:
    errors: list[str] = []
    base = f"http://127.0.0.1:{app.http_port}"
    page = await open_page(browser, f"{base}/ui/#token={HOBBYIST_KEY}", errors)
    used = page.get_by_test_id("used-chat_requests")
    await expect(used).to_have_text("0", timeout=10_000)
    assert "token" not in page.url  # taken out of the address bar, kept in sessionStorage
    assert await page.evaluate("sessionStorage.getItem('gatekeeper.token')") == HOBBYIST_KEY
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await following(app, "hobbyist")

    started = time.monotonic()
    assert await chat(app, HOBBYIST_KEY, 4) == [200] * 4  # 4 of 5: the 80 % alert fires
    await expect(used).to_have_text("4", timeout=2_000)
    assert time.monotonic() - started < 2.0
    await expect(page.get_by_test_id("cu-alerts")).to_contain_text("80% of chat_requests")
    forecast = page.get_by_test_id("cu-forecast").locator("tr[data-feature=chat_requests]")
    await expect(forecast.locator("td").nth(1)).to_have_text("4", timeout=8_000)
    # a hard daily quota cuts the customer off: the outlook never says "over by"
    await expect(forecast.locator("td").nth(5)).to_have_text(
        re.compile(r"^(blocked( around .+)? \(limit\)|within limit)$")
    )
    await page.screenshot(path=str(screenshots / "customer.png"), full_page=True)

    # the spend cap form names the field at fault
    await page.get_by_test_id("cap-amount").fill("twelve")
    await page.get_by_test_id("cap-save").click()
    await expect(page.get_by_test_id("cap-error")).to_contain_text("amount")
    await expect(page.get_by_test_id("cap-amount")).to_have_attribute("aria-invalid", "true")
    assert not errors, errors


async def test_operator_view(app: App, browser: BrowserContext, screenshots: Path) -> None:
    assert await chat(app, HOBBYIST_KEY, 7) == [200] * 5 + [429] * 2
    errors: list[str] = []
    page = await open_page(browser, f"http://127.0.0.1:{app.http_port}/ui/#token={ADMIN}", errors)
    await expect(page.locator("#role")).to_have_text("operator · admin", timeout=10_000)
    top = page.get_by_test_id("op-top")
    await expect(top).to_contain_text("hobbyist", timeout=5_000)
    await expect(page.get_by_test_id("op-denials")).to_contain_text("quota exhausted")
    await expect(page.locator("#op-chart canvas")).to_have_count(1)
    await expect(page.get_by_test_id("kpi-lag")).not_to_have_text("–")
    # the lag is known with the project's own (embedded, 6.2) Redis too: never "n/a (Redis < 7)"
    await expect(page.locator("#lag-lag")).to_have_text(re.compile(r"^\d[\d,]*$"))
    await page.screenshot(path=str(screenshots / "operator.png"), full_page=True)

    # drill down into the customer from the picker
    await page.get_by_test_id("customer-picker").select_option("hobbyist")
    await expect(page.get_by_test_id("used-chat_requests")).to_have_text("5", timeout=5_000)
    assert not errors, errors


async def test_bad_token_shows_the_sign_in_form(app: App, browser: BrowserContext) -> None:
    errors: list[str] = []
    page = await open_page(browser, f"http://127.0.0.1:{app.http_port}/ui/#token=wrong", errors)
    await expect(page.locator("#login-error")).to_contain_text("not accepted", timeout=10_000)
    await page.locator("#token-input").fill(HOBBYIST_KEY)
    await page.get_by_role("button", name="Open dashboard").click()
    await expect(page.get_by_test_id("used-chat_requests")).to_have_text("0", timeout=10_000)
    assert not errors, errors


async def test_a_customer_living_on_a_grant_sees_its_balance(
    app: App, browser: BrowserContext, screenshots: Path
) -> None:
    """3 chat requests all drawn from a grant of 3: the feature shows 0 used against its
    limit, and the grant shows 0 of 3 left (the counters, through the usage API)."""
    body = {
        "id": "living",
        "plan": "free",
        "grants": [{"id": "promo", "feature": "chat_requests", "amount": 3}],
    }
    admin = {"authorization": f"Bearer {ADMIN}"}
    api = f"http://127.0.0.1:{app.http_port}/v1/customers"
    async with aiohttp.ClientSession() as session:
        async with session.post(api, json=body, headers=admin) as r:
            assert r.status == 201, await r.text()
        async with session.post(f"{api}/living/api-keys", json={}, headers=admin) as r:
            assert r.status == 201, await r.text()
            key = (await r.json())["key"]
    assert await chat(app, key, 3) == [200] * 3
    errors: list[str] = []
    page = await open_page(browser, f"http://127.0.0.1:{app.http_port}/ui/#token={key}", errors)
    await expect(page.get_by_test_id("used-chat_requests")).to_have_text("0", timeout=10_000)
    grant = page.get_by_test_id("grant-promo")
    await expect(grant).to_contain_text("0 of 3 left", timeout=5_000)
    await expect(grant).to_contain_text("3 used")
    await page.screenshot(path=str(screenshots / "living-on-grants.png"), full_page=True)

    # the customer mutes anomaly alerts for its webhooks from the page: the API holds it
    await page.get_by_test_id("cu-mutes").locator("summary").click()
    anomaly = page.get_by_test_id("mute-anomaly")
    await expect(anomaly).to_be_checked()
    await anomaly.uncheck()
    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # the PUT is the page's: at most ~5 s
            async with session.get(f"{api}/living/alert-mutes", headers=admin) as r:
                muted = (await r.json())["muted"]
            if muted:
                break
            await asyncio.sleep(0.1)
    assert muted == ["anomaly"]
    assert not errors, errors


async def test_blocked_customers_are_told_why_and_how_to_lift_it(
    app: App, browser: BrowserContext, screenshots: Path
) -> None:
    """Blocked by quota (hobbyist: 5 a day) and by a blocking spend cap (thrifty: 0.005 USD):
    the card says blocked, since when and what lifts it; the alert list says it once."""
    assert await chat(app, HOBBYIST_KEY, 7) == [200] * 5 + [429] * 2
    errors: list[str] = []
    page = await open_page(
        browser, f"http://127.0.0.1:{app.http_port}/ui/#token={HOBBYIST_KEY}", errors
    )
    card = page.get_by_test_id("feature-chat_requests")
    await expect(card.get_by_test_id("blocked")).to_contain_text("used up", timeout=10_000)
    await expect(card.get_by_test_id("blocked")).to_contain_text("until the reset")
    alerts = page.get_by_test_id("cu-alerts")
    await expect(alerts).to_contain_text("Blocked: chat_requests quota used up")
    assert await alerts.locator("li[data-kind=blocked]").count() == 1
    # the two refusals, by reason, as the serving process flushed them (about a second on)
    await expect(page.get_by_test_id("cu-denials")).to_contain_text("Refused today", timeout=10_000)
    await expect(page.get_by_test_id("cu-denials")).to_contain_text("2 quota used up")
    await page.screenshot(path=str(screenshots / "blocked-by-quota.png"), full_page=True)
    await page.close()

    thrifty = "gk-test-thrifty"
    statuses = await chat(app, thrifty, 6)
    assert statuses[0] == 200 and 402 in statuses, statuses
    page = await open_page(browser, f"http://127.0.0.1:{app.http_port}/ui/#token={thrifty}", errors)
    spend = page.get_by_test_id("cu-spend")
    await expect(spend.get_by_test_id("blocked")).to_contain_text(
        "spend cap is reached", timeout=10_000
    )
    await expect(spend.get_by_test_id("blocked")).to_contain_text("raise your cap")
    await page.screenshot(path=str(screenshots / "blocked-by-cap.png"), full_page=True)
    assert not errors, errors


async def test_the_bill_and_daily_usage_are_the_billing_store_s(
    app: App, browser: BrowserContext, screenshots: Path
) -> None:
    """After the worker billed busy's requests, the page's bill to date is the invoice API's
    total (the billing store), line by line, and the daily chart has a point for today."""
    assert await chat(app, "gk-test-busy", 6) == [200] * 6
    billed = await bill_app(app)
    assert billed >= 6
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{app.http_port}/v1/customers/busy/invoice",
            headers={"authorization": f"Bearer {ADMIN}"},
        ) as r,
    ):
        invoice = await r.json()
    chat_line = next(x for x in invoice["lines"] if x["feature"] == "chat_requests")
    assert chat_line["quantity"] == 6
    errors: list[str] = []
    page = await open_page(
        browser, f"http://127.0.0.1:{app.http_port}/ui/#token=gk-test-busy", errors
    )
    total = page.get_by_test_id("bill-total")
    await expect(total).to_have_text(
        format_money(parse_nano(invoice["total"]), "USD"), timeout=10_000
    )
    row = page.get_by_test_id("cu-bill").locator("tr[data-feature=chat_requests]")
    await expect(row.locator("td").nth(1)).to_have_text("6")
    await expect(page.get_by_test_id("cu-daily")).to_have_attribute("data-days", "1")
    await page.screenshot(path=str(screenshots / "bill-to-date.png"), full_page=True)
    assert not errors, errors


async def test_the_operator_s_money_is_the_billing_store_s(
    app: App, browser: BrowserContext, screenshots: Path
) -> None:
    """Revenue today and month to date are the billing store's day totals, the top spenders
    its month spend, "blocked now" the customers refused by a quota or a blocking cap."""
    assert await chat(app, "gk-test-busy", 6) == [200] * 6
    assert await chat(app, HOBBYIST_KEY, 7) == [200] * 5 + [429] * 2
    assert 402 in await chat(app, "gk-test-thrifty", 4)
    assert await bill_app(app) >= 6
    store = await app.billing_store()
    assert store is not None
    today = datetime.now(UTC).date()
    (day,) = await store.day_totals(today, today)
    top = await store.top_spenders(today, "USD", 5)
    errors: list[str] = []
    page = await open_page(browser, f"http://127.0.0.1:{app.http_port}/ui/#token={ADMIN}", errors)
    await expect(page.get_by_test_id("kpi-rev-today")).to_have_text(
        format_money(day.amount_nano, "USD"), timeout=10_000
    )
    await expect(page.get_by_test_id("kpi-blocked")).to_have_text("2")
    rows = page.get_by_test_id("op-spenders").locator("tbody tr")
    await expect(rows).to_have_count(len(top))
    for i, spender in enumerate(top):
        await expect(rows.nth(i).locator("td").nth(0)).to_have_text(spender.customer)
        await expect(rows.nth(i).locator("td").nth(2)).to_have_text(
            format_money(spender.amount_nano, "USD")
        )
    blocked = page.get_by_test_id("op-blocked")
    await expect(blocked.locator("tr[data-customer=hobbyist] td").nth(1)).to_have_text(
        "chat_requests quota"
    )
    await expect(blocked.locator("tr[data-customer=thrifty] td").nth(2)).to_have_text(
        format_money(parse_nano("0.005"), "USD")
    )
    await page.screenshot(path=str(screenshots / "operator-money.png"), full_page=True)
    assert not errors, errors
