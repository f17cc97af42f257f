"""The `/v1` route table: one `Operation` per method and path, from which both the aiohttp
routes and the OpenAPI document are built (so the document cannot drift from the handlers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web

from gatekeeper.http.handlers import Handlers
from gatekeeper.http.schemas import COMPONENTS, FEATURE_NAME, ID, PLAN_NAME, ref

__all__ = ["PATH_PARAMS", "Access", "Operation", "Param", "openapi_document", "operations"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(StrEnum):
    ANY = "any"  # any valid token
    OPERATOR = "operator"  # admin or read-only operator tokens
    ADMIN = "admin"  # admin operator tokens
    CUSTOMER = "customer"  # operators, or the path's own customer (others: 404)
    MANAGE = "manage"  # admins, or the path's own customer (read-only operators: 403)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    op_id: str
    summary: str
    tag: str
    access: Access
    response: str | None  # component name of the 2xx body; None = no body
    status: int = 200
    body: str | None = None  # component name of the request body
    body_required: bool = True  # False: an absent or empty body is `{}`
    query: tuple[Param, ...] = ()


_LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size")
_TIME = {"type": "string", "format": "date-time"}
_DAY = {"type": "string", "format": "date"}
_EVENT_CURSOR = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,400}$"}
_STREAM_ID = {"type": "string", "pattern": "^[0-9]{1,19}(-[0-9]{1,19})?$"}
# Every path parameter's schema, by name (checked before the handler runs, like the query).
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "customer": ID,
    "plan": PLAN_NAME,
    "key": ID,
    "webhook": ID,
    "token": ID,
}


def operations(h: Handlers) -> tuple[Operation, ...]:
    c = "/v1/customers/{customer}"
    OP, A, C, M, ANY = Access.OPERATOR, Access.ADMIN, Access.CUSTOMER, Access.MANAGE, Access.ANY
    return (
        Operation("GET", "/v1/me", h.me, "me", "Who the token belongs to", "access", ANY, "Me"),
        Operation("GET", "/v1/features", h.features, "listFeatures", "Features", "catalog", OP,
                  "Features"),
        Operation("GET", "/v1/prices", h.prices, "listPrices", "Prices", "catalog", OP, "Prices"),
        Operation("GET", "/v1/plans", h.plans, "listPlans", "Plans", "catalog", OP, "Plans"),
        Operation("GET", "/v1/plans/{plan}", h.plan, "getPlan", "One plan", "catalog", OP, "Plan"),
        Operation("PUT", "/v1/plans/{plan}", h.put_plan, "putPlan",
                  "Create or replace a plan (policy-file shape); its customers follow at once",
                  "catalog", A, "Plan", body="PlanInput"),
        Operation("DELETE", "/v1/plans/{plan}", h.delete_plan, "deletePlan",
                  "Delete a plan no customer uses", "catalog", A, None, 204),
        Operation("GET", "/v1/customers", h.customers, "listCustomers", "Customers", "customers",
                  OP, "Customers",
                  query=(Param("plan", PLAN_NAME, "only customers on this plan"),
                         Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                               "page size (default 100)"),
                         Param("cursor", ID, "next_cursor of the last page"))),
        Operation("POST", "/v1/customers", h.create_customer, "createCustomer",
                  "Create a customer", "customers", A, "Customer", 201, body="NewCustomer"),
        Operation("GET", c, h.get_customer, "getCustomer", "One customer", "customers", C,
                  "Customer"),
        Operation("PUT", c, h.put_customer, "putCustomer",
                  "Create or replace a customer (keys and own cap are kept)", "customers", A,
                  "Customer", body="CustomerInput"),
        Operation("PATCH", c, h.patch_customer, "patchCustomer",
                  "Change some fields of a customer (null removes one)", "customers", A,
                  "Customer", body="CustomerPatch"),
        Operation("DELETE", c, h.delete_customer, "deleteCustomer", "Delete a customer",
                  "customers", A, None, 204),
        Operation("GET", c + "/api-keys", h.keys, "listApiKeys", "API keys (never the keys)",
                  "keys", C, "ApiKeys"),
        Operation("POST", c + "/api-keys", h.create_key, "createApiKey",
                  "Create an API key (shown once)", "keys", M, "IssuedKey", 201, body="KeyInput",
                  body_required=False),
        Operation("DELETE", c + "/api-keys/{key}", h.revoke_key, "revokeApiKey",
                  "Revoke an API key", "keys", M, "ApiKey"),
        Operation("POST", c + "/api-keys/{key}/rotate", h.rotate_key, "rotateApiKey",
                  "Replace an API key with a new one (shown once)", "keys", M, "IssuedKey", 201),
        Operation("GET", c + "/usage", h.usage, "getUsage",
                  "Live usage: used, limit, remaining, reset per feature; spend vs cap",
                  "usage", C, "Usage"),
        Operation("GET", c + "/forecast", h.forecast, "getForecast",
                  "Projected usage and spend at period end", "usage", C, "Forecast"),
        Operation("GET", c + "/alerts", h.alerts, "listAlerts", "Alerts, newest first", "usage",
                  C, "Alerts", query=(_LIMIT, Param("before", _TIME, "older than this"))),
        Operation("GET", c + "/events", h.events, "listEvents",
                  "Billed usage events, oldest first (paginated)", "usage", C, "Events",
                  query=(_LIMIT, Param("feature", FEATURE_NAME, "one feature only"),
                         Param("since", _TIME, "time >= since"),
                         Param("until", _TIME, "time < until"),
                         Param("cursor", _EVENT_CURSOR, "next_cursor of the last page"))),
        Operation("GET", c + "/invoice", h.invoice, "getInvoice",
                  "Invoice lines of a billing period", "billing", C, "Invoice",
                  query=(Param("period_start", _DAY,
                               "first day of the period (default: the current one)"),)),
        Operation("GET", c + "/revenue", h.revenue, "getRevenue",
                  "Recognised revenue per day", "billing", C, "Revenue",
                  query=(Param("from", _DAY, "first day"), Param("to", _DAY, "last day"))),
        Operation("GET", c + "/spend-cap", h.get_cap, "getSpendCap",
                  "The customer's own cap, the plan's, the one in force", "controls", C,
                  "CapState"),
        Operation("PUT", c + "/spend-cap", h.put_cap, "putSpendCap",
                  "Set (or with amount null remove) the customer's own spend cap", "controls",
                  M, "CapState", body="CapInput"),
        Operation("GET", c + "/alert-thresholds", h.get_thresholds, "getAlertThresholds",
                  "Alert thresholds (percent of limit or cap)", "controls", C, "Thresholds"),
        Operation("PUT", c + "/alert-thresholds", h.put_thresholds, "putAlertThresholds",
                  "Set the customer's own alert thresholds", "controls", M, "Thresholds",
                  body="ThresholdsInput"),
        Operation("GET", c + "/alert-mutes", h.get_mutes, "getAlertMutes",
                  "Alert kinds not sent to this customer's endpoints", "controls", C, "Mutes"),
        Operation("PUT", c + "/alert-mutes", h.put_mutes, "putAlertMutes",
                  "Set the alert kinds not sent to this customer's endpoints (the whole set)",
                  "controls", M, "Mutes", body="MutesInput"),
        Operation("GET", c + "/webhooks", h.webhooks, "listWebhooks",
                  "The customer's own webhook endpoints", "controls", C, "Webhooks"),
        Operation("POST", c + "/webhooks", h.add_webhook, "createWebhook",
                  "Add a webhook endpoint (signing secret shown once)", "controls", M,
                  "IssuedWebhook", 201, body="WebhookInput"),
        Operation("DELETE", c + "/webhooks/{webhook}", h.remove_webhook, "deleteWebhook",
                  "Remove a webhook endpoint", "controls", M, None, 204),
        Operation("GET", "/v1/revenue", h.revenue_totals, "getRevenueTotals",
                  "Revenue recognised per day over every customer", "money", OP,
                  "RevenueTotals",
                  query=(Param("from", _DAY, "first day (default: the month's first)"),
                         Param("to", _DAY, "last day (default: today)"))),
        Operation("GET", "/v1/top-spenders", h.top_spenders, "getTopSpenders",
                  "The customers who spent the most in a calendar month", "money", OP,
                  "TopSpenders",
                  query=(Param("month", _DAY, "any day of the month (default: this one)"),
                         Param("limit", {"type": "integer", "minimum": 1, "maximum": 100},
                               "how many (default 10)"))),
        Operation("GET", "/v1/blocked", h.blocked_now, "listBlocked",
                  "Customers a quota, spend cap or rate limit refuses now", "money", OP,
                  "Blocked", query=(_LIMIT,)),
        Operation("GET", "/v1/tokens", h.tokens, "listTokens", "API tokens (never the tokens)",
                  "access", A, "Tokens"),
        Operation("POST", "/v1/tokens", h.create_token, "createToken",
                  "Create an operator or customer token (shown once)", "access", A,
                  "IssuedToken", 201, body="TokenInput"),
        Operation("DELETE", "/v1/tokens/{token}", h.revoke_token, "revokeToken",
                  "Revoke a token", "access", A, "Token"),
        Operation("GET", "/v1/audit", h.audit, "listAudit", "Audit log, newest first", "access",
                  OP, "Audit",
                  query=(_LIMIT, Param("after", _STREAM_ID, "next of the last page"))),
    )  # fmt: skip


_ERRORS = {
    "401": "no valid token",
    "403": "the token may not do this",
    "404": "no such thing, or not visible to this token",
    "409": "conflicts with the current state",
    "422": "invalid input (body, path or query); `errors` names each field",
    "503": "a store is unavailable",
}


def _operation_doc(op: Operation) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMS[name]}
        for name in _path_params(op.path)
    ]
    params += [
        {"name": p.name, "in": "query", "required": False, "schema": p.schema,
         "description": p.description}
        for p in op.query
    ]  # fmt: skip
    problem = {"application/problem+json": {"schema": ref("Problem")}}
    responses: dict[str, Any] = {}
    if op.response is None:
        responses[str(op.status)] = {"description": "done"}
    else:
        responses[str(op.status)] = {
            "description": "ok",
            "content": {"application/json": {"schema": ref(op.response)}},
        }
        if op.method == "PUT" and op.status == 200 and op.access is Access.ADMIN:
            responses["201"] = {
                "description": "created",
                "content": {"application/json": {"schema": ref(op.response)}},
            }
    for code, text in _ERRORS.items():
        responses[code] = {"description": text, "content": problem}
    if op.body is not None:
        responses["413"] = {"description": "the body is larger than 1 MiB", "content": problem}
    doc: dict[str, Any] = {
        "operationId": op.op_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": params,
        "responses": responses,
        "x-access": op.access.value,
    }
    if op.body is not None:
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": ref(op.body)}},
        }
    return doc


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def openapi_document(ops: tuple[Operation, ...], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation_doc(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gatekeeper admin and customer API",
            "version": version,
            "description": (
                "Operators (admin, read-only) manage plans, customers, keys and tokens; "
                "customer tokens see and manage only their own customer. Bearer tokens. "
                "Money is a decimal string in the policy currency."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
