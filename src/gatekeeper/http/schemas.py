"""JSON Schemas (OpenAPI 3.1 components) of the `/v1` API's bodies and answers."""

from __future__ import annotations

from typing import Any

from gatekeeper.events import BLOCK_CAUSES, AlertKind

__all__ = ["COMPONENTS", "FEATURE_NAME", "ID", "PLAN_NAME", "ref"]

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), extra: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": props, "required": list(required)}
    if not extra:
        schema["additionalProperties"] = False
    return schema


def _list(item: Schema) -> Schema:
    return {"type": "array", "items": item}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
MONEY: Schema = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "examples": ["25.00"]}
# An amount a client sends: what `money.parse_nano` reads exactly (no sign, exponent or spaces;
# more than 9 decimals is refused by name after the pattern).
AMOUNT: Schema = {
    "type": "string",
    "pattern": r"^[0-9]+(\.[0-9]+)?$",
    "maxLength": 32,
    "examples": ["25.00"],
}
# Ids of customers, API keys, tokens and webhooks; plan and feature names (as check-config
# has them).
ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}
PLAN_NAME: Schema = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
FEATURE_NAME: Schema = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"}
TEXT: Schema = {"type": "string", "maxLength": 2000}
TIME: Schema = {"type": "string", "format": "date-time"}
DAY: Schema = {"type": "string", "format": "date"}


def _null(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


_PERCENTS = {**_list({"type": "integer", "minimum": 1, "maximum": 1000}), "maxItems": 100}
_UNIT_POINTS = {**_list({"type": "integer", "minimum": 1}), "maxItems": 20}
_MONEY_POINTS = {**_list(MONEY), "maxItems": 20}
_YAMLISH = {"type": "object", "description": "same shape as in the policy file"}
_METADATA = {
    "type": "object",
    "description": "free-form labels: at most 50, keys ≤ 64 characters, text values ≤ 512",
    "additionalProperties": {"type": "string", "maxLength": 512},
    "propertyNames": {"pattern": "^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"},
    "maxProperties": 50,
}

_CUSTOMER_FIELDS: dict[str, Schema] = {
    "plan": PLAN_NAME,
    "billing_day": _null({"type": "integer", "minimum": 1, "maximum": 31}),
    "overrides": _YAMLISH,
    "grants": _list(_YAMLISH),
    "description": TEXT,
    "metadata": _METADATA,
}

COMPONENTS: dict[str, Schema] = {
    "Problem": _obj(
        {
            "type": STR,
            "title": STR,
            "status": INT,
            "detail": STR,
            "errors": _list(_obj({"field": STR, "message": STR}, ("field", "message"))),
        },
        ("title", "status", "detail"),
    ),
    "Me": _obj(
        {"role": {"enum": ["admin", "read", "customer"]}, "customer": _null(STR), "actor": STR},
        ("role", "customer"),
    ),
    "Feature": _obj(
        {
            "name": STR,
            "type": {"enum": ["boolean", "metered", "config"]},
            "unit": _null(STR),
            "description": STR,
            "header": _null(STR),
        },
        ("name", "type"),
    ),
    "Features": _obj({"features": _list(ref("Feature"))}, ("features",)),
    "Price": _obj(
        {
            "feature": STR,
            "currency": STR,
            "per": INT,
            "tiers": _list(_obj({"up_to": _null(INT), "unit_price": STR}, ("up_to", "unit_price"))),
        },
        ("feature", "currency", "per", "tiers"),
    ),
    "Prices": _obj({"currency": STR, "prices": _list(ref("Price"))}, ("prices",)),
    "SpendCap": _obj(
        {
            "amount": _null(MONEY),
            "max_customer_cap": _null(MONEY),
            "action": STR,
            "alert_thresholds": _list(INT),
        },
        ("amount", "action"),
    ),
    "Plan": _obj(
        {
            "name": STR,
            "source": {"enum": ["file", "api"]},
            "access": _list(STR),
            "config": {"type": "object", "additionalProperties": STR},
            "metered": _list(
                _obj(
                    {"feature": STR, "limit": _null(INT), "period": STR, "enforcement": STR},
                    ("feature", "limit"),
                )
            ),
            "rate_limits": _list(_obj({"feature": STR, "limit": INT, "per": STR})),
            "spend_cap": _null(ref("SpendCap")),
        },
        ("name", "access", "metered", "rate_limits"),
    ),
    "Plans": _obj({"plans": _list(ref("Plan"))}, ("plans",)),
    "PlanInput": _obj(
        {
            "entitlements": _YAMLISH,
            "rate_limits": _list(_YAMLISH),
            "spend_cap": _YAMLISH,
            "description": TEXT,
        },
        (),
        extra=False,
    ),
    "ApiKey": _obj(
        {
            "id": STR,
            "label": STR,
            "revoked": BOOL,
            "created_at": _null(STR),
            "expires_at": _null(STR),
            "last_used_at": _null(STR),
        },
        ("id", "revoked"),
    ),
    "IssuedKey": _obj(
        {
            "id": STR,
            "key": STR,
            "label": STR,
            "revoked": BOOL,
            "created_at": _null(STR),
            "expires_at": _null(STR),
            "replaces": STR,
        },
        ("id", "key"),
    ),
    "ApiKeys": _obj({"api_keys": _list(ref("ApiKey"))}, ("api_keys",)),
    "KeyInput": _obj(
        {
            "id": ID,
            "expires_at": {**TIME, "description": "in the future"},
        },
        (),
        extra=False,
    ),
    "CustomerSummary": _obj(
        {"id": STR, "plan": STR, "source": STR, "billing_day": _null(INT), "api_keys": INT},
        ("id", "plan"),
    ),
    "Customers": _obj(
        {"customers": _list(ref("CustomerSummary")), "next_cursor": _null(STR)}, ("customers",)
    ),
    "Customer": _obj(
        {
            "id": STR,
            "plan": STR,
            "source": {"enum": ["file", "api"]},
            "billing_day": _null(INT),
            "entitlements": ref("Plan"),
            "grants": _list(
                _obj(
                    {"id": STR, "feature": STR, "amount": INT, "expires_at": _null(STR)},
                    ("id", "feature", "amount"),
                )
            ),
            "spend_cap": _obj(
                {
                    "own": _null(_obj({"amount": MONEY, "action": _null(STR)})),
                    "effective": _null(ref("SpendCap")),
                }
            ),
            "api_keys": _list(ref("ApiKey")),
            "metadata": _METADATA,
        },
        ("id", "plan", "entitlements", "api_keys"),
    ),
    "CustomerInput": _obj(_CUSTOMER_FIELDS, (), extra=False),
    "CustomerPatch": _obj(
        {name: _null(schema) for name, schema in _CUSTOMER_FIELDS.items()}, (), extra=False
    ),
    "NewCustomer": _obj({"id": ID, **_CUSTOMER_FIELDS}, ("id", "plan"), extra=False),
    "CapState": _obj(
        {
            "customer": STR,
            "currency": STR,
            "own_cap": _null(_obj({"amount": MONEY, "action": STR})),
            "plan_cap": _null(_obj({"amount": MONEY, "action": STR})),
            "effective_cap": _null(_obj({"amount": MONEY, "action": STR})),
            "ceiling": _null(MONEY),
            "adjusted": {
                "type": "boolean",
                "description": "true when the plan overrides part of own_cap: an own cap above "
                "the plan's current ceiling is enforced at the ceiling, and under a plan that "
                "blocks at its cap it blocks too",
            },
            "note": _null(STR),
        },
        ("customer", "own_cap", "effective_cap"),
    ),
    "CapInput": _obj(
        {
            "amount": {
                **_null(AMOUNT),
                "description": "the cap per billing period; null removes the own cap "
                "(required: a body without it is refused)",
            },
            "action": {
                **_null({"enum": ["block", "alert"]}),
                "description": "block (402 past the cap) or alert (admit and alert); alert "
                "only under a plan whose own cap alerts (an own cap never loosens the plan's)",
            },
        },
        ("amount",),
        extra=False,
    ),
    "Thresholds": _obj(
        {
            "customer": STR,
            "features": {"type": "object", "additionalProperties": _list(INT)},
            "spend": _null(_list(INT)),
            "features_at": {"type": "object", "additionalProperties": _list(INT)},
            "spend_at": _list(MONEY),
        },
        ("customer", "features", "spend", "features_at", "spend_at"),
    ),
    "ThresholdsInput": _obj(
        {
            "features": {"type": "object", "additionalProperties": _PERCENTS},
            "spend": _PERCENTS,
            "features_at": {"type": "object", "additionalProperties": _UNIT_POINTS},
            "spend_at": _MONEY_POINTS,
        },
        (),
        extra=False,
    ),
    "Mutes": _obj(
        {"customer": STR, "muted": _list(STR), "kinds": _list(STR)},
        ("customer", "muted", "kinds"),
    ),
    "MutesInput": _obj({"muted": _list(STR)}, ("muted",), extra=False),
    "Webhook": _obj(
        {"id": STR, "url": STR, "kinds": _list(STR), "created_at": _null(STR)}, ("id", "url")
    ),
    "IssuedWebhook": _obj(
        {"id": STR, "url": STR, "kinds": _list(STR), "created_at": _null(STR), "secret": STR},
        ("id", "url", "secret"),
    ),
    "Webhooks": _obj({"webhooks": _list(ref("Webhook"))}, ("webhooks",)),
    "WebhookInput": _obj(
        {
            "url": {
                "type": "string",
                "format": "uri",
                "pattern": r"^https?://[^\s/$.?#][^\s]*$",
                "maxLength": 2048,
                "description": "http(s) URL on a public address: loopback, private, link-local "
                "and other internal hosts (and localhost) are refused unless the operator set "
                "alerts.allow_private_customer_webhooks",
            },
            "kinds": {**_list({"enum": [kind.value for kind in AlertKind]}), "maxItems": 20},
        },
        ("url",),
        extra=False,
    ),
    "Usage": _obj(
        {
            "customer": STR,
            "plan": STR,
            "currency": STR,
            "at": TIME,
            "features": _list(
                _obj(
                    {
                        "feature": STR,
                        "unit": _null(STR),
                        "kind": {"enum": ["quota", "rate"]},
                        "used": INT,
                        "limit": _null(INT),
                        "remaining": _null(INT),
                        "reset": TIME,
                        "period": _null(STR),
                        "enforcement": _null(STR),
                    },
                    ("feature", "kind", "used", "limit", "remaining", "reset"),
                )
            ),
            "grants": _list(
                _obj(
                    {
                        "id": STR,
                        "feature": STR,
                        "amount": INT,
                        "used": INT,
                        "remaining": INT,
                        "expires_at": _null(TIME),
                        "expired": BOOL,
                    },
                    ("id", "feature", "amount", "used", "remaining", "expires_at", "expired"),
                )
            ),
            "spend": _null(
                _obj(
                    {
                        "spent": MONEY,
                        "cap": _null(MONEY),
                        "remaining": MONEY,
                        "reset": TIME,
                        "currency": STR,
                    },
                    ("spent", "cap", "reset"),
                )
            ),
            "denials_today": _obj(
                {
                    "date": {"type": "string", "format": "date"},
                    "total": INT,
                    "by_reason": {"type": "object", "additionalProperties": INT},
                },
                ("date", "total", "by_reason"),
            ),
        },
        ("customer", "plan", "features", "spend"),
    ),
    "Projection": _obj(
        {
            "feature": _null(STR),
            "used": {"type": ["integer", "string"]},
            "limit": {"type": ["integer", "string", "null"]},
            "projected": {"type": ["integer", "string"]},
            "period_end": TIME,
            "exceeds_limit": BOOL,
            "enforcement": {
                "type": ["string", "null"],
                "enum": ["block", "overage", "alert", None],
            },
            "outlook": {
                "type": "string",
                "enum": ["no_limit", "within_limit", "blocked", "over_limit"],
            },
            "limit_reached_at": _null(TIME),
        },
        ("feature", "used", "projected", "period_end", "exceeds_limit", "outlook"),
    ),
    "Forecast": _obj(
        {"customer": STR, "features": _list(ref("Projection")), "spend": _null(ref("Projection"))},
        ("customer", "features", "spend"),
    ),
    "Alert": _obj(
        {
            "id": STR,
            "kind": STR,
            "customer": STR,
            "feature": _null(STR),
            "threshold": INT,
            "used": {"type": ["integer", "string"]},
            "limit": {"type": ["integer", "string"]},
            "at": TIME,
            "delivered_at": _null(TIME),
            "cause": _null({"enum": list(BLOCK_CAUSES)}),
            "alert_at": {"anyOf": [INT, MONEY, {"type": "null"}]},
        },
        ("id", "kind", "customer", "threshold", "at"),
    ),
    "Alerts": _obj({"alerts": _list(ref("Alert"))}, ("alerts",)),
    "Event": _obj(
        {
            "id": STR,
            "kind": STR,
            "customer": STR,
            "feature": STR,
            "unit": STR,
            "quantity": INT,
            "billable": INT,
            "amount": MONEY,
            "currency": STR,
            "time": TIME,
            "overage": BOOL,
        },
        ("id", "kind", "customer", "feature", "quantity", "amount", "time"),
    ),
    "Events": _obj(
        {"events": _list(ref("Event")), "next_cursor": _null(STR)}, ("events", "next_cursor")
    ),
    "Invoice": _obj(
        {
            "customer": STR,
            "period_start": DAY,
            "currency": STR,
            "total": MONEY,
            "lines": _list(
                _obj(
                    {"feature": STR, "kind": STR, "quantity": INT, "amount": MONEY, "status": STR},
                    ("feature", "quantity", "amount"),
                )
            ),
        },
        ("customer", "period_start", "lines", "total"),
    ),
    "RevenueTotals": _obj(
        {
            "from": DAY,
            "to": DAY,
            "currency": STR,
            "total": MONEY,
            "events": INT,
            "days": _list(
                _obj(
                    {"day": DAY, "currency": STR, "events": INT, "amount": MONEY},
                    ("day", "currency", "events", "amount"),
                )
            ),
        },
        ("from", "to", "currency", "days", "total", "events"),
    ),
    "TopSpenders": _obj(
        {
            "month": DAY,
            "currency": STR,
            "spenders": _list(
                _obj(
                    {"customer": STR, "currency": STR, "events": INT, "amount": MONEY},
                    ("customer", "currency", "events", "amount"),
                )
            ),
        },
        ("month", "currency", "spenders"),
    ),
    "Blocked": _obj(
        {
            "count": INT,
            "blocked": _list(
                _obj(
                    {
                        "customer": STR,
                        "plan": STR,
                        "feature": _null(STR),
                        "cause": {"enum": list(BLOCK_CAUSES)},
                        "limit": _null(INT),
                        "limit_amount": _null(MONEY),
                        "currency": _null(STR),
                        "period_start": TIME,
                        "until": TIME,
                    },
                    ("customer", "feature", "cause", "until"),
                )
            ),
        },
        ("count", "blocked"),
    ),
    "Revenue": _obj(
        {
            "customer": STR,
            "from": DAY,
            "to": DAY,
            "total": MONEY,
            "days": _list(
                _obj(
                    {"day": DAY, "feature": STR, "quantity": INT, "amount": MONEY},
                    ("day", "feature", "amount"),
                )
            ),
        },
        ("customer", "days", "total"),
    ),
    "Token": _obj(
        {
            "id": STR,
            "role": STR,
            "customer": _null(STR),
            "name": STR,
            "created_at": STR,
            "created_by": STR,
            "revoked": BOOL,
        },
        ("id", "role", "revoked"),
    ),
    "IssuedToken": _obj(
        {"id": STR, "role": STR, "customer": _null(STR), "token": STR}, ("id", "role", "token")
    ),
    "Tokens": _obj({"tokens": _list(ref("Token"))}, ("tokens",)),
    "TokenInput": _obj(
        {
            "role": {"enum": ["admin", "read", "customer"]},
            "customer": {**ID, "description": "customer tokens only: an existing customer"},
            "name": {"type": "string", "maxLength": 200},
        },
        ("role",),
        extra=False,
    ),
    "Audit": _obj(
        {
            "entries": _list(
                _obj(
                    {"id": STR, "what": STR, "target": STR, "actor": STR, "at": STR},
                    ("id", "what", "actor", "at"),
                )
            ),
            "next": _null(STR),
        },
        ("entries", "next"),
    ),
}
