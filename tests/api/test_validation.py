"""Requests are checked against the published OpenAPI document before any handler runs: every
write endpoint refuses bad bodies with a 422 naming each field at fault (or a 413 past 1 MiB),
bad path and query parameters name themselves, and nothing a client sends is a 500."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from gatekeeper.http.bodies import MAX_BODY_BYTES
from tests.api.conftest import ADMIN, Api, key_of

C = "/v1/customers/hobbyist"
# Every operation that takes a body: (method, path, a valid-looking body to start from).
WRITES = [
    ("PUT", "/v1/plans/newplan", {"description": "x"}),
    ("POST", "/v1/customers", {"id": "newcust", "plan": "free"}),
    ("PUT", C, {"plan": "free"}),
    ("PATCH", C, {"description": "x"}),
    ("POST", C + "/api-keys", {}),
    ("PUT", C + "/spend-cap", {"amount": "5.00"}),
    ("PUT", C + "/alert-thresholds", {"spend": [80]}),
    ("POST", C + "/webhooks", {"url": "https://example.com/hook"}),
    ("POST", "/v1/tokens", {"role": "read"}),
]

# (method, path, body, fields the 422 must name)
BAD_BODIES: list[tuple[str, str, Any, set[str]]] = [
    ("PUT", "/v1/plans/newplan", {"description": 0}, {"description"}),
    ("PUT", "/v1/plans/newplan", {"entitlements": []}, {"entitlements"}),
    ("PUT", "/v1/plans/newplan", {"bogus": 1}, {"bogus"}),
    ("PUT", "/v1/plans/newplan", [], {"body"}),
    ("POST", "/v1/customers", {"plan": "free"}, {"id"}),
    ("POST", "/v1/customers", {"id": "", "plan": "free"}, {"id"}),
    ("POST", "/v1/customers", {"id": "n1", "plan": "free", "billing_day": 0}, {"billing_day"}),
    ("POST", "/v1/customers", {"id": "n1", "plan": "free", "metadata": {"k": 1}}, {"metadata.k"}),
    ("POST", "/v1/customers", {"id": "a b", "plan": 3, "zzz": 1}, {"id", "plan", "zzz"}),
    ("PUT", C, {"plan": None}, {"plan"}),
    ("PUT", C, {"grants": {}}, {"grants"}),
    ("PUT", C, {"plan": "free", "description": 7}, {"description"}),
    # policy-shaped fields are checked by check-config's parser, by path, never a 500
    (
        "PUT",
        C,
        {
            "plan": "free",
            "grants": [
                {"feature": "llm_tokens", "amount": 5, "expires_at": "9999-12-31T23:59:59-01:00"}
            ],
        },
        {"grants[0].expires_at"},
    ),
    (
        "PUT",
        C,
        {"plan": "free", "overrides": {"spend_cap": {"amount": "1E+999999999"}}},
        {"overrides.spend_cap.amount"},
    ),
    ("PUT", "/v1/plans/newplan", {"spend_cap": {"amount": "1E+999999999"}}, {"spend_cap.amount"}),
    ("PATCH", C, {"billing_day": "3"}, {"billing_day"}),
    ("PATCH", C, {"x": None}, {"x"}),
    ("POST", C + "/api-keys", {"id": ""}, {"id"}),
    ("POST", C + "/api-keys", {"id": "key\n"}, {"id"}),
    ("POST", C + "/api-keys", {"expires_at": "tomorrow"}, {"expires_at"}),
    ("POST", C + "/api-keys", {"expires_at": "2099-01-01T00:00:00"}, {"expires_at"}),
    ("POST", C + "/api-keys", {"expires_at": "9999-12-31T23:59:59-01:00"}, {"expires_at"}),
    ("POST", C + "/api-keys", [], {"body"}),
    ("PUT", C + "/spend-cap", {"amount": "1e2"}, {"amount"}),
    ("PUT", C + "/spend-cap", {"amount": 25}, {"amount"}),
    ("PUT", C + "/spend-cap", {"amount": "-1"}, {"amount"}),
    ("PUT", C + "/spend-cap", {"amount": " 25"}, {"amount"}),
    ("PUT", C + "/spend-cap", {}, {"amount"}),
    ("PUT", C + "/spend-cap", {"amount": None, "action": "stop"}, {"action"}),
    ("PUT", C + "/alert-thresholds", {"spend": [0]}, {"spend[0]"}),
    ("PUT", C + "/alert-thresholds", {"features": {"x": "80"}}, {"features.x"}),
    ("POST", C + "/webhooks", {}, {"url"}),
    ("POST", C + "/webhooks", {"url": "ftp://example.com"}, {"url"}),
    ("POST", C + "/webhooks", {"url": "https://ex\u00e4mple.com"}, {"url"}),
    ("POST", C + "/webhooks", {"url": "https://example.com", "kinds": ["nope"]}, {"kinds[0]"}),
    ("POST", "/v1/tokens", {"role": "root"}, {"role"}),
    ("POST", "/v1/tokens", {"role": "read", "name": 5}, {"name"}),
    ("POST", "/v1/tokens", {"role": "customer", "customer": ""}, {"customer"}),
    ("POST", "/v1/tokens", {"role": "read", "customer": None}, {"customer"}),
]


async def send(
    api: Api, method: str, path: str, data: bytes | None, token: str = ADMIN, gzipped: bool = False
) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    if gzipped:  # a body that does not inflate ends the connection after the answer
        headers["content-encoding"] = "gzip"
        headers["connection"] = "close"
    async with api.session.request(method, api.base + path, data=data, headers=headers) as r:
        body = await r.json(content_type=None) if r.content_type.endswith("json") else None
        return r.status, body


def _fields(body: Any) -> set[str]:
    return {e["field"] for e in body["errors"]}


@pytest.mark.parametrize(("method", "path", "body", "fields"), BAD_BODIES)
async def test_a_bad_body_is_a_422_naming_each_field(
    api: Api, method: str, path: str, body: Any, fields: set[str]
) -> None:
    status, answer = await send(api, method, path, json.dumps(body).encode())
    assert status == 422, answer
    assert _fields(answer) == fields, answer
    assert all(e["message"] for e in answer["errors"])


HOSTILE: list[tuple[str, bytes, int]] = [
    ("deep", b"[" * 100_000 + b"]" * 100_000, 422),
    ("long number", b'{"amount": ' + b"9" * 100_000 + b"}", 422),
    ("not UTF-8", b"\xff\xfe{}", 422),
    ("lone surrogate", b'{"description": "\\ud800"}', 422),
    ("NaN", b'{"billing_day": NaN}', 422),
    ("huge float", b'{"billing_day": 1e999}', 422),
    ("not JSON", b"{", 422),
    ("whitespace", b"\n", 422),
    ("empty", b"", 422),
    ("oversized", b'{"description": "' + b"a" * MAX_BODY_BYTES + b'"}', 413),
    ("inflates past 1 MiB", gzip.compress(b'{"description": "' + b"a" * 3_000_000 + b'"}'), 413),
    ("not gzip", b"garbage", 422),
]


@pytest.mark.parametrize(("method", "path", "good"), WRITES)
async def test_hostile_bodies_are_refused_on_every_write_endpoint(
    api: Api, method: str, path: str, good: dict[str, Any]
) -> None:
    customer = key_of("hobbyist")
    status, _ = await send(api, method, path, json.dumps(good).encode(), customer)
    tokens = [ADMIN] if status in (403, 404) else [ADMIN, customer]  # operator-only or not
    for name, data, expected in HOSTILE:
        if name == "empty" and path.endswith("/api-keys"):
            continue  # creating a key takes no body
        for token in tokens:
            gzipped = name in ("inflates past 1 MiB", "not gzip")
            status, answer = await send(api, method, path, data, token, gzipped)
            assert status == expected, (name, token, answer)
            assert answer["status"] == expected, (name, answer)
            if expected == 422:
                assert _fields(answer) == {"body"}, (name, answer)


async def test_the_reproduced_cases(api: Api) -> None:
    # An empty body to PUT /v1/plans/X is refused, and the plan is kept as it was.
    before = await api.call("GET", "/v1/plans/free")
    status, answer = await send(api, "PUT", "/v1/plans/free", None)
    assert status == 422 and _fields(answer) == {"body"}
    assert await api.call("GET", "/v1/plans/free") == before
    # A numeric description, a key id "" and a cap "1e2" are refused, by a customer's key too.
    status, answer = await api.call("PUT", "/v1/plans/free", body={"description": 3})
    assert status == 422 and _fields(answer) == {"description"}
    status, answer = await api.call(
        "POST", C + "/api-keys", token=key_of("hobbyist"), body={"id": ""}
    )
    assert status == 422 and _fields(answer) == {"id"}
    status, answer = await api.call(
        "PUT", C + "/spend-cap", token=key_of("hobbyist"), body={"amount": "1e2"}
    )
    assert status == 422 and _fields(answer) == {"amount"}
    assert "25.00" in answer["errors"][0]["message"]
    status, state = await api.call("GET", C + "/spend-cap")
    assert status == 200 and state["own_cap"] is None


async def test_a_valid_body_still_passes(api: Api) -> None:
    status, issued = await api.call(
        "POST", C + "/api-keys", body={"id": "k-1", "expires_at": "2099-01-01T00:00:00Z"}
    )
    assert status == 201 and issued["id"] == "k-1"
    status, _ = await send(api, "POST", C + "/api-keys", None)  # no body: a generated id
    assert status == 201
    status, customer = await api.call("PATCH", C, body={"description": None, "billing_day": 3})
    assert status == 200 and customer["billing_day"] == 3


BAD_PARAMS = [
    ("/v1/customers", {"limit": "0"}, "limit"),
    ("/v1/customers", {"limit": "\u0665"}, "limit"),  # an Arabic-Indic 5
    ("/v1/customers", {"limit": "+5"}, "limit"),
    ("/v1/customers", {"cursor": "a b"}, "cursor"),
    ("/v1/customers", {"plan": "../x"}, "plan"),
    (C + "/events", {"since": "2026-01-01"}, "since"),
    (C + "/events", {"until": "9999-12-31T23:59:59-01:00"}, "until"),
    (C + "/events", {"cursor": "!"}, "cursor"),
    (C + "/events", {"feature": "A"}, "feature"),
    # cursors whose moment no datetime holds in UTC (year 1 at +05:00, 9999 at -05:00)
    (C + "/events", {"cursor": "MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHx4"}, "cursor"),
    (C + "/events", {"cursor": "OTk5OS0xMi0zMVQyMzo1OTo1OS0wNTowMHx4"}, "cursor"),
    (C + "/alerts", {"before": "yesterday"}, "before"),
    (C + "/invoice", {"period_start": "0001-01-01"}, "period_start"),
    (C + "/revenue", {"from": "2026-13-01"}, "from"),
    (C + "/revenue", {"to": "9999-12-31"}, "to"),
    ("/v1/audit", {"after": "\u0661"}, "after"),
    ("/v1/customers/a%20b", {}, "customer"),
    ("/v1/plans/" + "p" * 65, {}, "plan"),
    ("/v1/tokens/%00", {}, "token"),
]


@pytest.mark.parametrize(("path", "params", "field"), BAD_PARAMS)
async def test_a_bad_parameter_is_a_422_naming_it(
    api: Api, path: str, params: dict[str, str], field: str
) -> None:
    method = "DELETE" if path.startswith("/v1/tokens/") else "GET"
    headers = {"authorization": f"Bearer {ADMIN}"}
    async with api.session.request(
        method, api.base + path, params=params or None, headers=headers
    ) as r:
        answer = await r.json(content_type=None)
    assert r.status == 422, answer
    assert _fields(answer) == {field}, answer


async def test_an_unexpected_error_is_a_problem_500_counted_and_logged(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handlers = api.app.handlers
    assert handlers is not None

    def broken() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(handlers._policy, "current", broken)  # type: ignore[attr-defined]
    status, answer = await api.call("GET", "/v1/features")
    assert status == 500 and answer["title"] == "Internal error"
    assert "secret" not in json.dumps(answer)
    assert "secret internals" in caplog.text
    async with api.session.get(api.base + "/metrics") as r:
        text = await r.text()
    line = 'gatekeeper_handler_failures_total{server="api",method="GET /v1/features"} 1'
    assert line in text
