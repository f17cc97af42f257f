"""The directory through the API: customer metadata, the customer list by pages, key expiry
and last use."""

from __future__ import annotations

from gatekeeper.edge.request import EdgeRequest
from tests.api.conftest import Api, key_of
from tests.conftest import also_on_cluster


async def test_metadata_is_kept_validated_and_shown(api: Api) -> None:
    status, body = await api.call(
        "PATCH", "/v1/customers/busy", body={"metadata": {"crm": "C-1042", "region": "eu"}}
    )
    assert status == 200 and body["metadata"] == {"crm": "C-1042", "region": "eu"}, body
    status, body = await api.call("GET", "/v1/customers/busy")
    assert body["metadata"] == {"crm": "C-1042", "region": "eu"}
    status, problem = await api.call(
        "PATCH", "/v1/customers/busy", body={"metadata": {"crm": ["C-1"], "x" * 70: "v"}}
    )
    assert status == 422, problem
    fields = sorted(e["field"] for e in problem["errors"])
    assert fields[0] == "metadata.crm" and fields[1].startswith("metadata"), problem


@also_on_cluster("app_target")
async def test_the_customer_list_pages_by_cursor_and_plan(api: Api) -> None:
    for i in range(7):
        status, _ = await api.call(
            "POST", "/v1/customers", body={"id": f"p{i:02d}", "plan": "free"}
        )
        assert status == 201
    status, everyone = await api.call("GET", "/v1/customers", limit="1000")
    ids = [c["id"] for c in everyone["customers"]]
    assert ids == sorted(ids) and everyone["next_cursor"] is None
    walked: list[str] = []
    cursor = None
    for _ in range(len(ids)):
        params = {"limit": "3"} if cursor is None else {"limit": "3", "cursor": cursor}
        status, page = await api.call("GET", "/v1/customers", **params)
        assert status == 200 and len(page["customers"]) <= 3
        walked += [c["id"] for c in page["customers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == ids
    status, free = await api.call("GET", "/v1/customers", plan="free", limit="1000")
    assert {f"p{i:02d}" for i in range(7)} <= {c["id"] for c in free["customers"]}
    assert all(c["plan"] == "free" for c in free["customers"])
    status, problem = await api.call("GET", "/v1/customers", cursor="{bad}")
    assert status == 422 and problem["errors"][0]["field"] == "cursor"


@also_on_cluster("app_target")
async def test_keys_show_expiry_and_last_use(api: Api) -> None:
    status, problem = await api.call(
        "POST", "/v1/customers/busy/api-keys", body={"expires_at": "2001-01-01T00:00:00Z"}
    )
    assert status == 422 and problem["errors"][0]["field"] == "expires_at"
    assert api.app.authorizer is not None and api.app.key_usage is not None
    await api.app.authorizer.check(EdgeRequest("GET", "/v1/models", {"x-api-key": key_of("busy")}))
    await api.app.key_usage.flush()
    status, keys = await api.call("GET", "/v1/customers/busy/api-keys")
    (busy,) = [k for k in keys["api_keys"] if k["id"] == "busy"]
    assert busy["last_used_at"] is not None and busy["expires_at"] is None


async def test_a_limit_beyond_exact_counting_is_refused_not_a_500(api: Api) -> None:
    body = {"entitlements": {"api_access": True, "chat_requests": {"limit": 10**30}}}
    status, problem = await api.call("PUT", "/v1/plans/huge", body=body)
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "entitlements.chat_requests.limit", problem
    status, _ = await api.call("GET", "/v1/plans/huge")
    assert status == 404


async def test_an_empty_body_is_refused_where_one_is_required(api: Api) -> None:
    status, before = await api.call("GET", "/v1/plans/free")
    for method, path in (("PUT", "/v1/plans/free"), ("PATCH", "/v1/customers/busy")):
        status, problem = await api.call(method, path)
        assert status == 422 and problem["errors"][0]["field"] == "body", problem
    status, after = await api.call("GET", "/v1/plans/free")
    assert after == before  # nothing emptied
    status, issued = await api.call("POST", "/v1/customers/busy/api-keys")  # body optional
    assert status == 201, issued


async def test_hostile_json_bodies_are_422_not_500(api: Api) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    long_number = '{"billing_day": ' + "1" * 100_000 + "}"
    for raw in (deep, long_number, '{"plan": 1e99999}'):
        async with api.session.patch(
            api.base + "/v1/customers/busy",
            data=raw,
            headers={
                "authorization": "Bearer bootstrap-operator-token",
                "content-type": "application/json",
            },
        ) as response:
            assert response.status == 422, (raw[:40], await response.text())
