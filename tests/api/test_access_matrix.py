"""Who may do what: every kind of caller against every kind of endpoint, expected status each.

Callers: the bootstrap admin token, a read-only operator token, customer A (hobbyist, its own
API key), customer B (busy, its own API key) and no token. The path's customer is A's. Another
customer's data answers 404 (never the data); operator-only endpoints answer 403 to customers.
"""

from __future__ import annotations

import itertools

from tests.api.conftest import ADMIN, Api, key_of

A, B = "hobbyist", "busy"
C = f"/v1/customers/{A}"
OK = 200
# method, path, body, expected status for (admin, read, customer A, customer B, no token)
MATRIX: list[tuple[str, str, object, tuple[int, int, int, int, int]]] = [
    ("GET", "/v1/me", None, (OK, OK, OK, OK, 401)),
    ("GET", "/v1/features", None, (OK, OK, 403, 403, 401)),
    ("GET", "/v1/prices", None, (OK, OK, 403, 403, 401)),
    ("GET", "/v1/plans", None, (OK, OK, 403, 403, 401)),
    ("GET", "/v1/plans/free", None, (OK, OK, 403, 403, 401)),
    ("GET", "/v1/customers", None, (OK, OK, 403, 403, 401)),
    ("GET", C, None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/usage", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/forecast", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/alerts", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/events", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/invoice", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/revenue", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/api-keys", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/spend-cap", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/alert-thresholds", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/webhooks", None, (OK, OK, OK, 404, 401)),
    ("GET", C + "/alert-mutes", None, (OK, OK, OK, 404, 401)),
    ("PUT", C + "/alert-mutes", {"muted": ["anomaly"]}, (OK, 403, OK, 404, 401)),
    ("PUT", C + "/spend-cap", {"amount": None}, (OK, 403, OK, 404, 401)),
    ("PUT", C + "/alert-thresholds", {"features": {"chat_requests": [50, 90]}},
     (OK, 403, OK, 404, 401)),
    ("POST", C + "/api-keys", {}, (201, 403, 201, 404, 401)),
    ("POST", C + "/webhooks", {"url": "https://hooks.example.com/gk"}, (201, 403, 201, 404, 401)),
    ("PATCH", C, {"billing_day": 3}, (OK, 403, 403, 404, 401)),
    ("PUT", "/v1/plans/free", None, (OK, 403, 403, 403, 401)),  # body: the plan's own document
    ("POST", "/v1/customers", {"id": "newco", "plan": "free"}, (201, 403, 403, 403, 401)),
    ("GET", "/v1/tokens", None, (OK, 403, 403, 403, 401)),
    ("POST", "/v1/tokens", {"role": "read"}, (201, 403, 403, 403, 401)),
    ("GET", "/v1/audit", None, (OK, OK, 403, 403, 401)),
    ("DELETE", "/v1/customers/former", None, (204, 403, 404, 404, 401)),
]  # fmt: skip


async def test_access_matrix(api: Api) -> None:
    status, created = await api.call("POST", "/v1/tokens", body={"role": "read", "name": "ro"})
    assert status == 201, created
    tokens = {
        "admin": ADMIN,
        "read": created["token"],
        "A": key_of(A),
        "B": key_of(B),
        "none": None,
    }
    status, plan_doc = await api.call("GET", "/v1/plans/free")
    assert status == 200
    failures = []
    # the admin goes last so its changes (a deleted customer...) don't change the others' answers
    order = ["none", "B", "A", "read", "admin"]
    for (method, path, body, expected), who in itertools.product(MATRIX, order):
        want = expected[["admin", "read", "A", "B", "none"].index(who)]
        if body is None and method == "PUT":
            body = plan_doc["document"]
        status, data = await api.call(method, path, tokens[who], body)
        if status != want:
            failures.append(f"{who:5} {method} {path}: {status} (want {want}) {data}")
        if status == 404 and who == "B":
            assert A not in str(data.get("plan", "")) and "entitlements" not in data
    assert not failures, "\n".join(failures)


async def test_unknown_and_revoked_tokens_are_refused_alike(api: Api) -> None:
    for token in ("nonsense", key_of("former"), ""):
        status, body = await api.call("GET", "/v1/me", token or None)
        assert status == 401, (token, body)
        assert body["title"] == "Unauthorized"
    status, created = await api.call("POST", "/v1/tokens", body={"role": "customer",
                                                                 "customer": A})  # fmt: skip
    assert status == 201
    assert (await api.call("GET", "/v1/me", created["token"]))[1]["customer"] == A
    status, _ = await api.call("DELETE", f"/v1/tokens/{created['id']}")
    assert status == 200
    assert (await api.call("GET", "/v1/me", created["token"]))[0] == 401
