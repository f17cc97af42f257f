"""A customer's own spend cap never loosens what its plan permits (DESIGN §3), through the API.

`spender` is on `metered_cap` (default cap 1.00, customers may set up to 2.00, action block);
`thrifty` is on `capped` (0.005, block). A chat request costs 0.002.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gatekeeper.engine.types import DecisionRequest, MeterRequest, Outcome
from gatekeeper.store.customers import CustomerRecord, RecordChange
from tests.api.conftest import Api, key_of

CAP = "/v1/customers/spender/spend-cap"


def _fields(problem: Any) -> list[str]:
    return [e["field"] for e in problem["errors"]]


async def test_an_alerting_own_cap_is_refused_under_a_blocking_plan(api: Api) -> None:
    for token in (key_of("spender"), None):  # the customer itself, and the operator
        kwargs = {} if token is None else {"token": token}
        status, problem = await api.call(
            "PUT", CAP, body={"amount": "2.00", "action": "alert"}, **kwargs
        )
        assert status == 422, problem
        assert _fields(problem) == ["action"] and "block" in problem["detail"], problem
    status, state = await api.call("GET", CAP)
    assert state["own_cap"] is None and state["effective_cap"]["action"] == "block"
    # an own cap that only lowers the amount is fine, and blocks like the plan's
    status, state = await api.call(
        "PUT", CAP, token=key_of("spender"), body={"amount": "0.50", "action": "block"}
    )
    assert status == 200, state
    assert state["effective_cap"] == {"amount": "0.50", "action": "block"}
    status, state = await api.call("PUT", CAP, token=key_of("spender"), body={"amount": "0.40"})
    assert status == 200 and state["effective_cap"] == {"amount": "0.40", "action": "block"}


async def test_an_alerting_own_cap_set_before_is_enforced_as_a_block(api: Api) -> None:
    """A cap stored before the rule (or under a plan that used to alert) still blocks."""
    assert api.app.engine is not None
    await _store_cap(api, "thrifty", {"amount": "0.003", "action": "alert"})  # as stored before
    status, state = await api.call("GET", "/v1/customers/thrifty/spend-cap")
    assert status == 200 and state["own_cap"] == {"amount": "0.003", "action": "alert"}
    assert state["effective_cap"] == {"amount": "0.003", "action": "block"}
    assert state["adjusted"] is True and "block" in state["note"], state
    outcomes = [
        (
            await api.app.engine.decide(
                DecisionRequest("thrifty", meters=(MeterRequest("chat_requests", 1),))
            )
        ).outcome
        for _ in range(2)
    ]
    assert outcomes == [Outcome.ALLOWED, Outcome.SPEND_CAP]


async def _store_cap(api: Api, customer: str, cap: dict[str, str]) -> None:
    """Write an own cap straight into the customer's record, unchecked (as an older version
    or a plan that used to allow it left it), and drop the process's copy."""
    directory = api.app.policy

    def write(before: CustomerRecord | None) -> RecordChange[None]:
        assert before is not None
        doc = {**before.doc, "spend_cap": cap}
        return RecordChange(None, replace(before, doc=doc))

    await directory.records.change(
        customer, write, channel=directory.records.keys.invalidate_channel()
    )
    directory.invalidate(customer)


async def _chats(api: Api, customer: str, tries: int) -> list[Outcome]:
    assert api.app.engine is not None
    request = DecisionRequest(customer, meters=(MeterRequest("chat_requests", 1),))
    return [(await api.app.engine.decide(request)).outcome for _ in range(tries)]


async def test_a_plan_change_brings_the_own_cap_under_the_new_ceiling(api: Api) -> None:
    status, _ = await api.call("PUT", CAP, token=key_of("spender"), body={"amount": "2.00"})
    assert status == 200
    status, _ = await api.call("PATCH", "/v1/customers/spender", body={"plan": "capped"})
    assert status == 200
    status, state = await api.call("GET", CAP, token=key_of("spender"))
    assert state["own_cap"] == {"amount": "2.00", "action": "block"}  # kept, as documented
    assert state["ceiling"] == "0.005"
    assert state["effective_cap"] == {"amount": "0.005", "action": "block"}
    assert state["adjusted"] is True and "0.005 applies" in state["note"], state
    assert await _chats(api, "spender", 3) == [Outcome.ALLOWED] * 2 + [Outcome.SPEND_CAP]
    status, usage = await api.call("GET", "/v1/customers/spender/usage")
    assert usage["spend"]["cap"] == "0.005", usage
    # the same through PUT (replace): the plan's ceiling applies
    await api.call("PUT", "/v1/customers/spender", body={"plan": "metered_cap"})
    status, state = await api.call("GET", CAP)
    assert state["effective_cap"]["amount"] == "2.00" and state["adjusted"] is False
    await api.call("PUT", "/v1/customers/spender", body={"plan": "capped"})
    status, state = await api.call("GET", CAP)
    assert state["effective_cap"]["amount"] == "0.005" and state["adjusted"] is True


async def test_a_lowered_plan_ceiling_applies_to_own_caps_at_once(api: Api) -> None:
    status, _ = await api.call("PUT", CAP, token=key_of("spender"), body={"amount": "1.80"})
    assert status == 200
    status, plan = await api.call("GET", "/v1/plans/metered_cap")
    doc = plan["document"]
    doc["spend_cap"] = {"amount": "0.002", "max_customer_cap": "0.004", "action": "block"}
    status, _ = await api.call("PUT", "/v1/plans/metered_cap", body=doc)
    assert status == 200
    status, state = await api.call("GET", CAP)
    assert state["effective_cap"] == {"amount": "0.004", "action": "block"}
    assert state["adjusted"] is True
    assert await _chats(api, "spender", 3) == [Outcome.ALLOWED] * 2 + [Outcome.SPEND_CAP]
    # and a new cap above the lowered ceiling is refused, as before
    status, problem = await api.call("PUT", CAP, token=key_of("spender"), body={"amount": "1.00"})
    assert status == 422 and _fields(problem) == ["amount"], problem


async def test_a_cap_body_without_amount_is_refused_not_a_removal(api: Api) -> None:
    status, _ = await api.call("PUT", CAP, token=key_of("spender"), body={"amount": "0.80"})
    assert status == 200
    for body in ({"action": "block"}, {}):
        status, problem = await api.call("PUT", CAP, token=key_of("spender"), body=body)
        assert status == 422 and _fields(problem) == ["amount"], (body, problem)
        assert "null" in problem["detail"], problem
    status, state = await api.call("GET", CAP)
    assert state["own_cap"] == {"amount": "0.80", "action": "block"}  # still in force
    status, state = await api.call("PUT", CAP, token=key_of("spender"), body={"amount": None})
    assert status == 200 and state["own_cap"] is None  # the documented removal
    assert state["effective_cap"] == {"amount": "1.00", "action": "block"}
    status, document = await api.call("GET", "/v1/openapi.json", token=None)
    assert document["components"]["schemas"]["CapInput"]["required"] == ["amount"]


async def test_a_bad_cap_body_names_every_field_at_fault(api: Api) -> None:
    body = {"amount": 25, "action": "shout", "currency": "USD", "limit": 1}
    status, problem = await api.call("PUT", CAP, token=key_of("spender"), body=body)
    assert status == 422, problem
    assert sorted(_fields(problem)) == ["action", "amount", "currency", "limit"], problem
    status, problem = await api.call("PUT", CAP, token=key_of("spender"), body={"action": "x"})
    assert status == 422 and sorted(_fields(problem)) == ["action", "amount"], problem
