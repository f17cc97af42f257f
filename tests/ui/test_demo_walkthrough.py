"""The demo as a new user walks it: `gatekeeper demo` with its own traffic (its embedded Redis
and SQLite file, as `./scripts/demo` starts it), then the dashboard in Chromium with each key
the banner prints, and the operator's. What each customer sees is checked against the API and
kept as screenshots (test-output/screenshots/demo-*.png, tests/ui/browser.py).

- acme (pro plan, steady): admitted, living on its token grant, no block.
- hobbyist (free plan, faster than its 2/s rate limit, 100 chats a day): told it is rate
  limited (sustained), then that its daily quota is used up and until when.
- initech (its own $0.50 cap): told its spend cap is reached and how to lift it.
- the operator: revenue today, top spenders and who is blocked now.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gatekeeper.money import parse_nano
from tests.demo.test_demo import DemoRun, start_demo, stop_runs
from tests.ui.browser import CHROMIUM, needs_chromium, open_page

pytestmark = [needs_chromium, pytest.mark.slow, pytest.mark.e2e]

if CHROMIUM.exists():
    from playwright.async_api import BrowserContext, expect

BLOCKED_WITHIN_S = 180  # initech spends $0.50 in about a minute of the demo's traffic


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoRun]:
    run = start_demo(tmp_path / "demo")
    try:
        yield run
    finally:
        stop_runs([run])


async def _get(run: DemoRun, path: str, token: str) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(run.api + path, headers={"authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 200, (path, r.status, await r.text())
        body: dict[str, object] = await r.json()
        return body


async def _blocked_causes(run: DemoRun, token: str) -> set[tuple[str, str]]:
    blocked = await _get(run, "/v1/blocked", token)
    return {(str(b["customer"]), str(b["cause"])) for b in blocked["blocked"]}  # type: ignore[attr-defined]


async def test_each_demo_customer_sees_its_own_situation(
    demo: DemoRun, browser: BrowserContext, screenshots: Path
) -> None:
    await asyncio.to_thread(demo.wait_ready)
    banner = "\n".join(demo.lines)
    operator = next(t for t in re.findall(r"/ui/#token=(\S+)", banner) if not t.startswith("demo-"))
    want = {("initech", "spend_cap"), ("hobbyist", "quota_exhausted")}
    async with asyncio.timeout(BLOCKED_WITHIN_S):
        while not want <= (causes := await _blocked_causes(demo, operator)):
            await asyncio.sleep(1)
    assert ("acme", "spend_cap") not in causes and ("acme", "quota_exhausted") not in causes
    errors: list[str] = []
    ui = f"{demo.api}/ui/#token="

    # acme: inside its limits, its tokens drawn from the grant first
    page = await open_page(browser, ui + "demo-acme-key", errors)
    await expect(page.locator("#role")).to_contain_text("acme", timeout=10_000)
    await expect(page.get_by_test_id("used-chat_requests")).not_to_have_text("0", timeout=10_000)
    grant = page.locator("[data-testid^=grant-]").first
    await expect(grant).to_contain_text("left", timeout=10_000)
    await expect(page.get_by_test_id("blocked")).to_have_count(0)
    await page.screenshot(path=str(screenshots / "demo-acme.png"), full_page=True)
    await page.close()

    # hobbyist: rate limited on and on, then its 100 chats of the day used up
    page = await open_page(browser, ui + "demo-hobbyist-key", errors)
    card = page.get_by_test_id("feature-chat_requests")
    await expect(card.get_by_test_id("blocked")).to_contain_text("used up", timeout=10_000)
    alerts = page.get_by_test_id("cu-alerts")
    await expect(alerts).to_contain_text("Blocked: chat_requests quota used up")
    await expect(alerts).to_contain_text("rate limited")
    rate = page.get_by_test_id("rate-chat_requests")
    await expect(rate).to_contain_text("per second")
    assert await alerts.locator("li[data-kind=blocked]").count() >= 2  # rate, then quota
    await page.screenshot(path=str(screenshots / "demo-hobbyist.png"), full_page=True)
    await page.close()

    # initech: its own $0.50 cap reached
    page = await open_page(browser, ui + "demo-initech-key", errors)
    spend = page.get_by_test_id("cu-spend")
    await expect(spend.get_by_test_id("blocked")).to_contain_text(
        "spend cap is reached", timeout=10_000
    )
    await expect(spend.get_by_test_id("blocked")).to_contain_text("raise your cap")
    # its forecast says so too: blocked now, not at some projected time
    verdict = page.get_by_test_id("verdict-spend")
    await expect(verdict).to_have_text("blocked now (spend cap)", timeout=10_000)
    await page.screenshot(path=str(screenshots / "demo-initech.png"), full_page=True)
    await page.close()

    # the operator: money and blocks, each the API's (which tests/api compares with the stores)
    page = await open_page(browser, ui + operator, errors)
    await expect(page.get_by_test_id("kpi-rev-today")).not_to_have_text("–", timeout=10_000)
    blocked = page.get_by_test_id("op-blocked")
    await expect(blocked.locator("tr[data-customer=initech]")).to_have_count(1, timeout=15_000)
    hobbyist = blocked.locator("tr[data-customer=hobbyist]")
    await expect(hobbyist.first).to_be_visible()
    # each block says what it is (its rate-limit run may have ended meanwhile)
    texts = sorted(await hobbyist.locator("td:nth-child(2)").all_inner_texts())
    assert texts in (["chat_requests quota"], ["chat_requests quota", "chat_requests rate limit"])
    # traffic goes on meanwhile: the order may move, who spends does not
    top = await _get(demo, "/v1/top-spenders?limit=5", operator)
    spenders = {str(x["customer"]): parse_nano(str(x["amount"])) for x in top["spenders"]}  # type: ignore[attr-defined]
    assert spenders.get("acme", 0) > 0 and spenders.get("initech", 0) > 0, spenders
    rows = page.get_by_test_id("op-spenders").locator("tbody tr")
    await expect(rows).to_have_count(len(spenders))
    assert await rows.first.get_attribute("data-customer") in spenders
    await page.screenshot(path=str(screenshots / "demo-operator.png"), full_page=True)
    assert not errors, errors
