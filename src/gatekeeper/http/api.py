"""HTTP API on 8080 (aiohttp): health, and the customer's spending controls.

Access: `Authorization: Bearer <token>` — the operator token (GATEKEEPER_ADMIN_TOKEN) sees every
customer; a customer's own API key is a customer-scoped token that sees only that customer.
Anything outside a token's scope answers 404, never the data. Inputs are validated with 422
problem bodies naming the field.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gatekeeper.controls import LivePolicy, SpendCapError, SpendControls, cap_ceiling
from gatekeeper.edge import key_hash
from gatekeeper.model import CapAction, Customer, SpendCap
from gatekeeper.money import MoneyError, format_nano, parse_nano
from gatekeeper.settings import Secret

__all__ = ["Actor", "build_api"]

PROBLEM = "application/problem+json"


@dataclass(frozen=True, slots=True)
class Actor:
    operator: bool
    customer_id: str | None

    @property
    def name(self) -> str:
        return "operator" if self.operator else f"customer:{self.customer_id}"

    def may_see(self, customer_id: str) -> bool:
        return self.operator or self.customer_id == customer_id


def _problem(status: int, title: str, detail: str, **extra: object) -> web.Response:
    body = {
        "type": f"https://gatekeeper.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM)


def _invalid(field: str, message: str) -> web.Response:
    return _problem(
        422, "Invalid input", f"{field}: {message}", errors=[{"field": field, "message": message}]
    )


def _not_found() -> web.Response:
    return _problem(404, "Not found", "no such customer")


def _cap_json(cap: SpendCap | None) -> dict[str, object] | None:
    if cap is None or cap.amount_nano is None:
        return None
    return {"amount": format_nano(cap.amount_nano), "action": cap.action.value}


class _Api:
    def __init__(
        self,
        *,
        policy: LivePolicy,
        controls: SpendControls,
        admin_token: Secret | None,
        ready: Callable[[], bool],
    ) -> None:
        self._policy = policy
        self._controls = controls
        self._admin = admin_token
        self._ready = ready

    def actor(self, request: web.Request) -> Actor | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if self._admin is not None and hmac.compare_digest(token, self._admin.value):
            return Actor(True, None)
        owner = self._policy.current().key_owner(key_hash(token))
        if owner is None or owner[1].revoked:
            return None
        return Actor(False, owner[0].id)

    def _customer(self, request: web.Request, actor: Actor) -> Customer | None:
        customer_id = request.match_info["customer"]
        if not actor.may_see(customer_id):
            return None
        return self._policy.current().customers.get(customer_id)

    def _state(self, customer: Customer) -> dict[str, object]:
        ceiling = cap_ceiling(customer)
        return {
            "customer": customer.id,
            "currency": self._policy.current().currency,
            "own_cap": _cap_json(
                None
                if customer.spend_cap is None
                else SpendCap(
                    customer.spend_cap.amount_nano,
                    None,
                    customer.spend_cap.action
                    or (customer.effective_spend_cap or SpendCap(None)).action,
                )
            ),
            "plan_cap": _cap_json(customer.entitlements.spend_cap),
            "effective_cap": _cap_json(customer.effective_spend_cap),
            "ceiling": None if ceiling is None else format_nano(ceiling),
        }

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = self._ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def get_cap(self, request: web.Request) -> web.Response:
        actor = request["actor"]
        customer = self._customer(request, actor)
        if customer is None:
            return _not_found()
        return web.json_response(self._state(customer))

    async def put_cap(self, request: web.Request) -> web.Response:
        actor: Actor = request["actor"]
        customer = self._customer(request, actor)
        if customer is None:
            return _not_found()
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _invalid("body", "expected a JSON object")
        if not isinstance(body, dict):
            return _invalid("body", "expected a JSON object")
        unknown = sorted(set(body) - {"amount", "action"})
        if unknown:
            return _invalid(unknown[0], "unknown field (expected amount, action)")
        amount_nano: int | None = None
        if body.get("amount") is not None:
            if not isinstance(body["amount"], str):
                return _invalid("amount", 'expected a decimal string such as "25.00", or null')
            try:
                amount_nano = parse_nano(body["amount"])
            except MoneyError as exc:
                return _invalid("amount", str(exc))
        action = None
        if body.get("action") is not None:
            try:
                action = CapAction(body["action"])
            except ValueError:
                return _invalid("action", "expected block or alert")
        try:
            await self._controls.set_cap(
                actor=actor.name, customer_id=customer.id, amount_nano=amount_nano, action=action
            )
        except SpendCapError as exc:
            return _invalid(exc.field, str(exc))
        return web.json_response(self._state(self._policy.current().customers[customer.id]))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_api(
    *,
    policy: LivePolicy,
    controls: SpendControls,
    admin_token: Secret | None,
    ready: Callable[[], bool],
) -> web.Application:
    api = _Api(policy=policy, controls=controls, admin_token=admin_token, ready=ready)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        actor = api.actor(request)
        if actor is None:
            return _problem(401, "Unauthorized", "send a bearer token (operator or API key)")
        request["actor"] = actor
        return await handler(request)

    app = web.Application(middlewares=[authenticate])
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/v1/customers/{customer}/spend-cap", api.get_cap)
    app.router.add_put("/v1/customers/{customer}/spend-cap", api.put_cap)
    return app
