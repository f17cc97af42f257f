"""The operator's money view through the API: revenue per day and to date, top spenders and
customers blocked now, from real decisions (the ext_authz fast path) billed by the real worker,
compared with the billing store's own events and with what the customers were answered."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from gatekeeper.model import Period
from gatekeeper.money import format_nano
from gatekeeper.periods import window_for
from tests.api.conftest import Api, key_of
from tests.api.test_admin import authz
from tests.api.test_usage_billing import bill
from tests.billing.stores import raw
from tests.conftest import also_on_cluster


async def _events_by_customer(api: Api) -> dict[str, list[int]]:
    """customer -> [events, amount_nano] over every stored usage event (read with SQL)."""
    store = await api.app.billing_store()
    assert store is not None
    rows = await raw(
        store, "SELECT customer, COUNT(*), SUM(amount_nano) FROM usage_events GROUP BY customer"
    )
    return {str(r[0]): [int(str(r[1])), int(str(r[2]))] for r in rows}


@also_on_cluster("app_target")
async def test_revenue_spenders_and_blocked_are_the_stores(api: Api) -> None:
    answers: dict[str, list[int]] = defaultdict(list)
    for customer, n in (("busy", 9), ("hobbyist", 7), ("thrifty", 3)):
        for _ in range(n):
            answers[customer].append(await authz(api.app, key_of(customer)))
    assert answers["hobbyist"] == [200] * 5 + [429] * 2  # the free plan's 5 a day, then refused
    assert answers["thrifty"][0] == 200 and answers["thrifty"][-1] == 402  # its $0.005 cap
    assert await bill(api) > 0
    stored = await _events_by_customer(api)
    admitted = {c: a.count(200) for c, a in answers.items()}
    # each admitted chat request is two events (requests and the tokens it reserved)
    assert {c: v[0] for c, v in stored.items()} == {c: 2 * n for c, n in admitted.items()}

    today = datetime.now(UTC).date()
    days = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
    status, revenue = await api.call("GET", "/v1/revenue", **days)
    assert status == 200, revenue
    all_nano = sum(v[1] for v in stored.values())
    assert revenue["total"] == format_nano(all_nano) and revenue["currency"] == "USD"
    assert revenue["events"] == sum(v[0] for v in stored.values())
    assert sum(Decimal(d["amount"]) for d in revenue["days"]) == Decimal(all_nano) / 10**9

    status, top = await api.call("GET", "/v1/top-spenders", month=today.isoformat(), limit="3")
    assert status == 200, top
    want = sorted(stored.items(), key=lambda kv: (-kv[1][1], kv[0]))[:3]
    assert [(s["customer"], s["events"], s["amount"]) for s in top["spenders"]] == [
        (c, v[0], format_nano(v[1])) for c, v in want
    ]
    assert top["month"] == today.replace(day=1).isoformat()

    status, blocked = await api.call("GET", "/v1/blocked")
    assert status == 200, blocked
    assert blocked["count"] == 2
    by_customer = {b["customer"]: b for b in blocked["blocked"]}
    hobby, thrifty = by_customer["hobbyist"], by_customer["thrifty"]
    day = window_for(datetime.now(UTC), Period.DAY)
    assert (hobby["feature"], hobby["cause"], hobby["limit"]) == ("chat_requests",
                                                                  "quota_exhausted", 5)  # fmt: skip
    assert datetime.fromisoformat(hobby["until"]) == day.end
    assert (thrifty["feature"], thrifty["cause"], thrifty["limit_amount"]) == (None, "spend_cap",
                                                                               "0.005")  # fmt: skip
    status, one = await api.call("GET", "/v1/blocked", limit="1")
    assert status == 200 and one["count"] == 2 and len(one["blocked"]) == 1

    # operators only: a customer's own token sees none of it
    for path in ("/v1/revenue", "/v1/top-spenders", "/v1/blocked"):
        status, _ = await api.call("GET", path, token=key_of("busy"))
        assert status == 403, path


async def test_bad_ranges_name_the_parameter(api: Api) -> None:
    status, problem = await api.call(
        "GET", "/v1/revenue", **{"from": "2026-12-07", "to": "2026-12-01"}
    )
    assert status == 422 and problem["errors"][0]["field"] == "to"
    status, problem = await api.call("GET", "/v1/top-spenders", limit="1000")
    assert status == 422 and problem["errors"][0]["field"] == "limit"
    status, problem = await api.call("GET", "/v1/top-spenders", month="December")
    assert status == 422 and problem["errors"][0]["field"] == "month"
