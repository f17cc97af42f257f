"""Operators change customers, plans and keys through the API; enforcement follows at once,
on every process; every change is audited; invalid input is refused naming the field."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from gatekeeper.app import App
from tests.api.conftest import ADMIN, Api, key_of, sha, start_app
from tests.conftest import RedisTarget, also_on_cluster


async def authz(app: App, key: str, path: str = "/v1/chat/completions") -> int:
    """What the ext_authz HTTP fast path answers Envoy for a request with this key."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{app.authz_http_port}{path}", headers={"x-api-key": key}
        ) as response,
    ):
        return response.status


@also_on_cluster("app_target")
async def test_key_lifecycle_create_list_rotate_revoke(api: Api) -> None:
    status, issued = await api.call("POST", "/v1/customers/busy/api-keys", body={"id": "ci"})
    assert status == 201 and issued["id"] == "ci" and issued["key"].startswith("gk_")
    key = issued["key"]
    assert await authz(api.app, key) == 200
    status, listed = await api.call("GET", "/v1/customers/busy/api-keys")
    assert status == 200
    assert key not in str(listed) and sha(key) not in str(listed)  # shown once, never again
    assert {"id": "ci", "label": key[:8] + "…", "revoked": False}.items() <= next(
        k for k in listed["api_keys"] if k["id"] == "ci"
    ).items()
    status, rotated = await api.call("POST", "/v1/customers/busy/api-keys/ci/rotate")
    assert status == 201 and rotated["replaces"] == "ci"
    assert await authz(api.app, key) == 401
    assert await authz(api.app, rotated["key"]) == 200
    status, revoked = await api.call("DELETE", f"/v1/customers/busy/api-keys/{rotated['id']}")
    assert status == 200 and revoked["revoked"] is True
    assert await authz(api.app, rotated["key"]) == 401
    assert await authz(api.app, key_of("busy")) == 200  # the file's key is untouched
    status, taken = await api.call("POST", "/v1/customers/busy/api-keys", body={"id": "busy"})
    assert status == 409, taken


async def test_customer_manages_its_own_keys_only(api: Api) -> None:
    status, issued = await api.call(
        "POST", "/v1/customers/hobbyist/api-keys", token=key_of("hobbyist")
    )
    assert status == 201
    status, _ = await api.call(
        "DELETE", f"/v1/customers/busy/api-keys/{issued['id']}", token=key_of("hobbyist")
    )
    assert status == 404
    status, _ = await api.call(
        "DELETE", "/v1/customers/hobbyist/api-keys/hobby", token=issued["key"]
    )
    assert status == 200
    assert await authz(api.app, key_of("hobbyist")) == 401


@also_on_cluster("app_target")
async def test_create_customer_then_it_is_enforced(api: Api) -> None:
    status, made = await api.call(
        "POST",
        "/v1/customers",
        body={"id": "newco", "plan": "free", "overrides": {"chat_requests": {"limit": 2}}},
    )
    assert status == 201, made
    assert made["source"] == "api" and made["entitlements"]["metered"][0]["limit"] == 2
    status, issued = await api.call("POST", "/v1/customers/newco/api-keys")
    answers = [await authz(api.app, issued["key"]) for _ in range(3)]
    assert answers == [200, 200, 429]
    status, usage = await api.call("GET", "/v1/customers/newco/usage")
    chat = next(f for f in usage["features"] if f["feature"] == "chat_requests")
    assert (chat["used"], chat["limit"], chat["remaining"]) == (2, 2, 0)
    status, _ = await api.call("POST", "/v1/customers", body={"id": "newco", "plan": "free"})
    assert status == 409
    assert (await api.call("DELETE", "/v1/customers/newco"))[0] == 204
    assert await authz(api.app, issued["key"]) == 401
    assert (await api.call("GET", "/v1/customers/newco"))[0] == 404


async def test_invalid_input_names_the_field(api: Api) -> None:
    cases = [
        ({"id": "x1", "plan": "fre"}, "plan", "did you mean 'free'"),
        (
            {"id": "x2", "plan": "free", "overrides": {"chat_requests": {"limit": -1}}},
            "overrides.chat_requests.limit",
            "",
        ),
        ({"id": "x3", "plan": "free", "colour": "red"}, "colour", "unknown field"),
        ({"id": "x4", "plan": "free", "billing_day": 40}, "billing_day", ""),
        ({"id": "bad id!", "plan": "free"}, "id", ""),
        ({"plan": "free"}, "id", "required"),
        (
            {"id": "x5", "plan": "free", "grants": [{"feature": "api_access", "amount": 5}]},
            "grants[0].feature",
            "metered",
        ),
    ]
    for body, field, words in cases:
        status, problem = await api.call("POST", "/v1/customers", body=body)
        assert status == 422, (body, problem)
        fields = [e["field"] for e in problem["errors"]]
        assert field in fields, (body, problem)
        assert words in problem["detail"], (body, problem)
    async with api.session.post(
        api.base + "/v1/customers",
        data=b"{not json",
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
    ) as response:
        assert response.status == 422
        assert (await response.json(content_type=None))["errors"][0]["field"] == "body"
    status, problem = await api.call(
        "PUT", "/v1/customers/hobbyist/spend-cap", body={"amount": "lots"}
    )
    assert status == 422 and problem["errors"][0]["field"] == "amount"
    status, problem = await api.call(
        "PUT", "/v1/customers/hobbyist/alert-thresholds", body={"features": {"chat": [50]}}
    )
    assert status == 422 and problem["errors"][0]["field"] == "features.chat"
    status, problem = await api.call(
        "PUT", "/v1/customers/hobbyist/alert-thresholds",
        body={"features": {"chat_requests": [150, 50]}},
    )  # fmt: skip
    assert status == 422 and problem["errors"][0]["field"] == "features.chat_requests", problem


@also_on_cluster("app_target")
async def test_plan_change_reaches_its_customers(api: Api) -> None:
    status, plan = await api.call("GET", "/v1/plans/free")
    doc = plan["document"]
    doc["entitlements"]["chat_requests"]["limit"] = 1
    status, changed = await api.call("PUT", "/v1/plans/free", body=doc)
    assert status == 200 and changed["source"] == "api"
    assert [await authz(api.app, key_of("hobbyist")) for _ in range(2)] == [200, 429]
    status, problem = await api.call("DELETE", "/v1/plans/free")
    assert status == 409 and "hobbyist" in problem["detail"]
    status, problem = await api.call("PUT", "/v1/plans/gold", body={"entitlements": {"nope": 1}})
    assert status == 422 and problem["errors"][0]["field"].startswith("entitlements.nope")


@also_on_cluster("app_target")
async def test_every_change_is_audited_with_before_and_after(api: Api) -> None:
    await api.call("PATCH", "/v1/customers/busy", body={"billing_day": 7})
    await api.call("PUT", "/v1/customers/busy/spend-cap", token=key_of("busy"),
                   body={"amount": None})  # fmt: skip
    status, audit = await api.call("GET", "/v1/audit")
    assert status == 200
    latest, earlier = audit["entries"][0], audit["entries"][1]
    assert latest["what"] == "spend_cap.set" and latest["actor"] == "customer:busy:key:busy"
    assert earlier["what"] == "customer.update" and earlier["actor"] == "admin:bootstrap"
    assert earlier["target"] == "customer:busy"
    assert "billing_day" not in earlier["before"] and earlier["after"]["billing_day"] == 7
    status, page = await api.call("GET", "/v1/audit", limit="1", after=latest["id"])
    assert page["entries"][0]["id"] == earlier["id"]


@also_on_cluster("app_target")
async def test_changes_apply_on_every_process_within_a_second(
    app_target: RedisTarget, key_prefix: str, tmp_path: Path
) -> None:
    apps = [
        await start_app(
            app_target.url, key_prefix, str(tmp_path / "b.sqlite"), cluster=app_target.cluster
        )
        for _ in range(2)
    ]
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(apps[0], session, f"http://127.0.0.1:{apps[0].http_port}")
            status, issued = await api.call("POST", "/v1/customers/busy/api-keys")
            assert status == 201
            for change, want in ((None, 200), ("revoke", 401)):
                if change == "revoke":
                    await api.call("DELETE", f"/v1/customers/busy/api-keys/{issued['id']}")
                started = time.monotonic()
                while await authz(apps[1], issued["key"], "/v1/models") != want:
                    assert time.monotonic() - started < 1.0, f"other process not {want} in 1 s"
                    await asyncio.sleep(0.02)
    finally:
        for app in apps:
            await app.stop(0)
