"""Handlers of the `/v1` API. Each reads its input, calls the domain, answers JSON.

Access is checked before a handler runs (see `routes.py`); errors a caller can cause are raised
as AdminError / InputError and turned into problem answers by the API's middleware.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from gatekeeper.access import Actor
from gatekeeper.admin import AdminService, InputError, NotFound
from gatekeeper.admin.customers import ID
from gatekeeper.admin.errors import FieldError
from gatekeeper.admin.service import token_view, webhook_view
from gatekeeper.billing.protocol import BillingStore
from gatekeeper.billing.types import EventQuery
from gatekeeper.clock import Clock
from gatekeeper.controls import SpendCapError, SpendControls, cap_ceiling
from gatekeeper.directory.key_usage import KeyUsage
from gatekeeper.engine import DecisionEngine, PolicySource
from gatekeeper.forecast import (
    DailyPoint,
    enforcement,
    forecast_spend,
    forecast_usage,
    outlook,
)
from gatekeeper.http import views
from gatekeeper.http.auth import ACTOR
from gatekeeper.http.bodies import read_body as _body
from gatekeeper.model import CapAction, Customer, Enforcement, Period, SpendCap
from gatekeeper.money import MoneyError, format_money, format_nano, parse_nano
from gatekeeper.notify.state import ALERT_KINDS, AlertMutes
from gatekeeper.periods import billing_window, window_for
from gatekeeper.pipeline.forecasting import daily_points
from gatekeeper.stats import DenialsReader
from gatekeeper.stats.blocked import BlockedReader

__all__ = ["Handlers"]

MAX_PAGE = 1000
CUSTOMER_PAGE = 100  # customers per page unless `limit` says otherwise


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError.one(name, f"expected an integer from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise InputError.one(name, f"expected an integer from {lo} to {hi}")
    return value


def _time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError.one(name, "expected an ISO 8601 date-time with a timezone") from None
    if value.tzinfo is None:
        raise InputError.one(name, "needs a timezone, e.g. 2026-11-01T00:00:00Z")
    return value.astimezone(UTC)


def _date_param(request: web.Request, name: str, default: date) -> date:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InputError.one(name, "expected a date YYYY-MM-DD") from None


def _cursor(after: tuple[datetime, str]) -> str:
    raw = f"{after[0].isoformat()}|{after[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(text: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        when, _, event_id = raw.partition("|")
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None or not event_id:
            raise ValueError(raw)
        # in UTC, as this API wrote it: an hour-offset year 1 or 9999 cannot be converted
        return moment.astimezone(UTC), event_id
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InputError.one("cursor", "not a cursor this API returned") from None


def _day_range(request: web.Request, today: date) -> tuple[date, date]:
    """`from` .. `to` (default: the month to date), at most 366 days."""
    first = _date_param(request, "from", today.replace(day=1))
    last = _date_param(request, "to", today)
    if last < first:
        raise InputError.one("to", "must not be before from")
    if (last - first).days > 366:
        raise InputError.one("to", "at most 366 days per request")
    return first, last


class Handlers:
    def __init__(
        self,
        *,
        admin: AdminService,
        policy: PolicySource,
        controls: SpendControls,
        engine: DecisionEngine,
        billing: Callable[[], Awaitable[BillingStore | None]],
        clock: Clock,
        key_usage: KeyUsage | None = None,
        mutes: AlertMutes | None = None,
        denials: DenialsReader | None = None,
        blocked: BlockedReader | None = None,
    ) -> None:
        self._admin = admin
        self._blocked = blocked
        self._denials = denials
        self._mutes = mutes
        self._policy = policy
        self._controls = controls
        self._engine = engine
        self._billing = billing
        self._clock = clock
        self._key_usage = key_usage

    # ---- helpers ---------------------------------------------------------------------
    @staticmethod
    def actor(request: web.Request) -> Actor:
        actor: Actor = request[ACTOR]
        return actor

    async def customer(self, request: web.Request) -> Customer:
        """The path's customer, when the caller may see it; else NotFound (never the data)."""
        customer_id = request.match_info["customer"]
        customer = None
        if self.actor(request).may_see(customer_id):
            customer = await self._policy.customer(customer_id)
        if customer is None:
            raise NotFound(f"no customer {customer_id!r}")
        return customer

    async def _changed(self, customer_id: str) -> Customer:
        """The customer as a change just left it (NotFound if it was removed meanwhile)."""
        customer = await self._policy.customer(customer_id)
        if customer is None:
            raise NotFound(f"no customer {customer_id!r}")
        return customer

    async def _store(self) -> BillingStore:
        store = await self._billing()
        if store is None:
            raise NotFound("no billing store is configured on this process")
        return store

    # ---- identity ----------------------------------------------------------------------
    async def me(self, request: web.Request) -> web.Response:
        actor = self.actor(request)
        return _json({"role": actor.role.value, "customer": actor.customer_id, "actor": actor.name})

    # ---- catalog -----------------------------------------------------------------------
    async def features(self, request: web.Request) -> web.Response:
        policy = self._policy.current()
        return _json({"features": [views.feature_view(f) for f in policy.features.values()]})

    async def prices(self, request: web.Request) -> web.Response:
        policy = self._policy.current()
        return _json(
            {
                "currency": policy.currency,
                "prices": [views.price_view(p) for p in policy.prices.values()],
            }
        )

    async def plans(self, request: web.Request) -> web.Response:
        policy = self._policy.current()
        return _json(
            {
                "plans": [
                    views.plan_view(p, source=self._admin.plan_source(p.name))
                    for p in policy.plans.values()
                ]
            }
        )

    async def plan(self, request: web.Request) -> web.Response:
        name = request.match_info["plan"]
        plan = self._policy.current().plans.get(name)
        if plan is None:
            raise NotFound(f"no plan {name!r}")
        return _json(
            {
                **views.plan_view(plan, source=self._admin.plan_source(name)),
                "document": self._admin.plan_doc(name),
            }
        )

    async def put_plan(self, request: web.Request) -> web.Response:
        name = request.match_info["plan"]
        created = await self._admin.put_plan(self.actor(request), name, await _body(request))
        plan = self._policy.current().plans[name]
        return _json(views.plan_view(plan, source="api"), status=201 if created else 200)

    async def delete_plan(self, request: web.Request) -> web.Response:
        await self._admin.delete_plan(self.actor(request), request.match_info["plan"])
        return web.Response(status=204)

    # ---- customers ---------------------------------------------------------------------
    async def _customer_json(self, customer: Customer) -> dict[str, Any]:
        source = await self._admin.customer_source(customer.id)
        used = await self._key_usage.last_used(customer.id) if self._key_usage else None
        return views.customer_view(customer, source=source, last_used=used)

    async def customers(self, request: web.Request) -> web.Response:
        """A page of customers in id order (`limit`, `cursor` = the previous page's
        `next_cursor`), optionally only those on `plan`."""
        policy = self._policy.current()
        plan = request.query.get("plan")
        if plan is not None and plan not in policy.plans:
            raise InputError.one("plan", f"unknown plan {plan!r}")
        limit = _int_param(request, "limit", CUSTOMER_PAGE, 1, MAX_PAGE)
        after = request.query.get("cursor") or None
        if after is not None and not ID.fullmatch(after):
            raise InputError.one("cursor", "not a cursor this API returned")
        records = self._admin.records
        ids = await records.page(after=after, limit=limit, plan=plan)
        found = await records.get_many(ids)
        return _json(
            {
                "customers": [views.customer_list_view(found[c]) for c in ids if c in found],
                "next_cursor": ids[-1] if len(ids) == limit else None,
            }
        )

    async def get_customer(self, request: web.Request) -> web.Response:
        return _json(await self._customer_json(await self.customer(request)))

    async def create_customer(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise InputError.one("body", "expected a JSON object")
        customer_id = body.get("id")
        if not isinstance(customer_id, str):
            raise InputError.one("id", "required: the new customer's id")
        fields = {k: v for k, v in body.items() if k != "id"}
        await self._admin.put_customer(self.actor(request), customer_id, fields, create_only=True)
        customer = await self._changed(customer_id)
        return _json(await self._customer_json(customer), status=201)

    async def put_customer(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customer"]
        created = await self._admin.put_customer(
            self.actor(request), customer_id, await _body(request)
        )
        customer = await self._changed(customer_id)
        return _json(await self._customer_json(customer), status=201 if created else 200)

    async def patch_customer(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        await self._admin.patch_customer(self.actor(request), customer.id, await _body(request))
        return _json(await self._customer_json(await self._changed(customer.id)))

    async def delete_customer(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        await self._admin.delete_customer(self.actor(request), customer.id)
        return web.Response(status=204)

    # ---- API keys ----------------------------------------------------------------------
    async def keys(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        return _json({"api_keys": (await self._customer_json(customer))["api_keys"]})

    async def create_key(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        issued = await self._admin.create_key(
            self.actor(request), customer.id, await _body(request, required=False)
        )
        return _json({**issued.view, "key": issued.secret}, status=201)

    async def revoke_key(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        view = await self._admin.revoke_key(
            self.actor(request), customer.id, request.match_info["key"]
        )
        return _json(dict(view))

    async def rotate_key(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        issued = await self._admin.rotate_key(
            self.actor(request), customer.id, request.match_info["key"]
        )
        return _json({**issued.view, "key": issued.secret}, status=201)

    # ---- spend cap and alert thresholds (self-service) ---------------------------------
    def _cap_state(self, customer: Customer) -> dict[str, object]:
        ceiling = cap_ceiling(customer)
        own = customer.spend_cap
        effective = customer.effective_spend_cap
        currency = self._policy.current().currency
        return {
            "customer": customer.id,
            "currency": currency,
            "own_cap": None
            if own is None
            else {
                "amount": format_nano(own.amount_nano),
                "action": (
                    own.action or (effective.action if effective else CapAction.BLOCK)
                ).value,
            },
            "plan_cap": _cap(customer.entitlements.spend_cap),
            "effective_cap": _cap(effective),
            "ceiling": None if ceiling is None else format_nano(ceiling),
            **_cap_adjustment(customer, effective, currency),
        }

    async def get_cap(self, request: web.Request) -> web.Response:
        return _json(self._cap_state(await self.customer(request)))

    async def put_cap(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        actor = self.actor(request)
        if not actor.may_manage(customer.id):
            raise PermissionError("this token may not change this customer")
        body = await _body(request)
        if not isinstance(body, dict):
            raise InputError.one("body", "expected a JSON object")
        errors = [
            FieldError(name, "unknown field (expected amount, action)")
            for name in sorted(set(body) - {"amount", "action"})
        ]
        amount_nano: int | None = None
        if "amount" not in body:  # only an explicit null removes the cap, never a missing amount
            errors.append(
                FieldError(
                    "amount",
                    'required: a decimal string such as "25.00", or null to remove the cap',
                )
            )
        elif body["amount"] is not None:
            if not isinstance(body["amount"], str):
                errors.append(
                    FieldError("amount", 'expected a decimal string such as "25.00", or null')
                )
            else:
                try:
                    amount_nano = parse_nano(body["amount"])
                except MoneyError as exc:
                    errors.append(FieldError("amount", str(exc)))
        action = None
        if body.get("action") is not None:
            try:
                action = CapAction(body["action"])
            except ValueError:
                errors.append(FieldError("action", "expected block or alert"))
        if errors:
            raise InputError(errors)
        try:
            await self._controls.set_cap(
                actor=actor.name, customer_id=customer.id, amount_nano=amount_nano, action=action
            )
        except SpendCapError as exc:
            raise InputError.one(exc.field, str(exc)) from None
        return _json(self._cap_state(await self._changed(customer.id)))

    def _thresholds(self, customer: Customer) -> dict[str, object]:
        ents = customer.entitlements
        cap = customer.effective_spend_cap
        return {
            "customer": customer.id,
            "features": {f: list(m.alert_thresholds) for f, m in ents.metered.items()},
            "spend": None if cap is None else list(cap.alert_thresholds),
            "features_at": {f: list(m.alert_at) for f, m in ents.metered.items()},
            "spend_at": [] if cap is None else [format_nano(a) for a in cap.alert_at],
        }

    async def get_thresholds(self, request: web.Request) -> web.Response:
        return _json(self._thresholds(await self.customer(request)))

    async def put_thresholds(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        await self._admin.set_thresholds(self.actor(request), customer.id, await _body(request))
        return _json(self._thresholds(await self._changed(customer.id)))

    # ---- alert mutes ---------------------------------------------------------------------
    async def get_mutes(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        return _json(await self._mutes_view(customer.id))

    async def put_mutes(self, request: web.Request) -> web.Response:
        """`{"muted": [kind, ...]}`: the alert kinds this customer's endpoints are not sent
        (the whole set, replaced; `[]` unmutes all). Alerts are still recorded and listed."""
        customer = await self.customer(request)
        if not self.actor(request).may_manage(customer.id):
            raise PermissionError("this token may not change this customer")
        body = await _body(request)
        if not isinstance(body, dict) or set(body) != {"muted"}:
            raise InputError.one("muted", 'expected {"muted": [alert kind, ...]}')
        wanted = body["muted"]
        if not isinstance(wanted, list) or not all(isinstance(k, str) for k in wanted):
            raise InputError.one("muted", "expected a list of alert kinds")
        unknown = sorted(set(wanted) - ALERT_KINDS)
        if unknown:
            raise InputError.one(
                "muted", f"unknown alert kinds {unknown}; known: {sorted(ALERT_KINDS)}"
            )
        mutes = self._require_mutes()
        await mutes.unmute(customer.id)
        await mutes.mute(customer.id, sorted(set(wanted)))
        return _json(await self._mutes_view(customer.id))

    def _require_mutes(self) -> AlertMutes:
        if self._mutes is None:  # pragma: no cover - serve always wires it
            raise NotFound("alert mutes are not available here")
        return self._mutes

    async def _mutes_view(self, customer_id: str) -> dict[str, Any]:
        muted = await self._require_mutes().muted(customer_id)
        return {"customer": customer_id, "muted": sorted(muted), "kinds": sorted(ALERT_KINDS)}

    # ---- customer webhooks -------------------------------------------------------------
    async def webhooks(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        hooks = await self._admin.webhooks(customer.id)
        return _json({"webhooks": [webhook_view(h) for h in hooks]})

    async def add_webhook(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        issued = await self._admin.add_webhook(
            self.actor(request), customer.id, await _body(request)
        )
        return _json({**issued.view, "secret": issued.secret}, status=201)

    async def remove_webhook(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        await self._admin.remove_webhook(
            self.actor(request), customer.id, request.match_info["webhook"]
        )
        return web.Response(status=204)

    # ---- usage, forecast, alerts, events, invoices, revenue ----------------------------
    async def usage_json(self, customer_id: str) -> dict[str, Any] | None:
        """The usage view of one customer (also the dashboard's live stream). Raises
        StoreUnavailable."""
        policy = self._policy.current()
        customer = await self._policy.customer(customer_id)
        if customer is None:
            return None
        limits = await self._engine.usage(customer_id)
        if limits is None:
            return None
        grants = await self._engine.grant_balances(customer) if customer.grants else ()
        now = self._clock.now()
        denials = await self._denials.on(customer_id, now) if self._denials else None
        return views.usage_view(policy, customer, limits, now, grants, denials)

    async def usage(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        data = await self.usage_json(customer.id)
        if data is None:
            raise NotFound(f"no customer {customer.id!r}")
        return _json(data)

    async def forecast(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        store = await self._store()
        now = self._clock.now()
        limits = await self._engine.usage(customer.id) or ()
        used = {(s.kind.value, s.feature): s for s in limits}
        history_start = (now - timedelta(days=62)).date()
        rows = await store.revenue(customer.id, history_start, now.date())
        out: list[dict[str, Any]] = []
        for feature, metered in customer.entitlements.metered.items():
            if metered.period in (Period.MINUTE, Period.HOUR):
                continue
            window = window_for(now, metered.period, metered.anchor, customer.billing_day)
            points = daily_points(rows, feature)
            status = used.get(("quota", feature))
            current = status.used if status else 0
            result = forecast_usage(
                _with_today(points, now.date(), current, window.start.date()),
                period_start=window.start,
                period_end=window.end,
                now=now,
            )
            view = views.forecast_view(
                feature,
                current,
                metered.limit,
                result,
                window.end,
                outlook=outlook(
                    result,
                    used=current,
                    limit=metered.limit,
                    refused_at=metered.ceiling,
                    now=now,
                    period_end=window.end,
                ),
                enforcement=enforcement(
                    metered.limit,
                    refuses=metered.enforcement is Enforcement.HARD,
                    otherwise="overage",
                ),
            )
            out.append(view)
        spend = None
        status = used.get(("spend", None))
        if status is not None:
            window = billing_window(now, customer.billing_day)
            cap = customer.effective_spend_cap
            result = forecast_spend(
                _with_today(daily_points(rows, None), now.date(), status.used, window.start.date()),
                period_start=window.start,
                period_end=window.end,
                now=now,
            )
            amount = None if cap is None else cap.amount_nano
            blocks = cap is not None and cap.action is CapAction.BLOCK
            spend = views.forecast_view(
                None,
                status.used,
                amount,
                result,
                window.end,
                outlook=outlook(
                    result,
                    used=status.used,
                    limit=amount,
                    refused_at=amount if blocks else None,
                    now=now,
                    period_end=window.end,
                ),
                enforcement=enforcement(amount, refuses=blocks, otherwise="alert"),
            )
        return _json({"customer": customer.id, "features": out, "spend": spend})

    async def alerts(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        limit = _int_param(request, "limit", 50, 1, MAX_PAGE)
        before = _time_param(request, "before")
        found = await (await self._store()).alerts(customer.id, limit=limit, before=before)
        return _json({"alerts": [views.alert_view(a) for a in found]})

    async def events(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
        feature = request.query.get("feature")
        if feature is not None and feature not in self._policy.current().features:
            raise InputError.one("feature", f"unknown feature {feature!r}")
        cursor = request.query.get("cursor")
        query = EventQuery(
            customer=customer.id,
            feature=feature,
            since=_time_param(request, "since"),
            until=_time_param(request, "until"),
            after=None if cursor is None else _uncursor(cursor),
            limit=limit,
        )
        found = await (await self._store()).events(query)
        following = None
        if len(found) == limit:
            last = found[-1].event
            following = _cursor((last.time, last.id))
        return _json({"events": [views.event_view(e) for e in found], "next_cursor": following})

    async def invoice(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        current = billing_window(self._clock.now(), customer.billing_day).start.date()
        period = _date_param(request, "period_start", current)
        lines = await (await self._store()).invoice_lines(customer.id, period)
        total = sum(line.amount_nano for line in lines)
        return _json(
            {
                "customer": customer.id,
                "period_start": period.isoformat(),
                "currency": self._policy.current().currency,
                "lines": [views.invoice_line_view(line) for line in lines],
                "total": format_nano(total),
            }
        )

    async def revenue(self, request: web.Request) -> web.Response:
        customer = await self.customer(request)
        first, last = _day_range(request, self._clock.now().date())
        rows = await (await self._store()).revenue(customer.id, first, last)
        return _json(
            {
                "customer": customer.id,
                "from": first.isoformat(),
                "to": last.isoformat(),
                "days": [views.ledger_view(r) for r in rows],
                "total": format_nano(sum(r.amount_nano for r in rows)),
            }
        )

    # ---- money over every customer (operators) ---------------------------------------
    async def revenue_totals(self, request: web.Request) -> web.Response:
        """Revenue recognised per day over every customer (the billing store's day totals)."""
        first, last = _day_range(request, self._clock.now().date())
        rows = await (await self._store()).day_totals(first, last)
        currency = self._policy.current().currency
        return _json(
            {
                "from": first.isoformat(),
                "to": last.isoformat(),
                "currency": currency,
                "days": [views.day_total_view(r) for r in rows],
                "total": format_nano(sum(r.amount_nano for r in rows if r.currency == currency)),
                "events": sum(r.event_count for r in rows if r.currency == currency),
            }
        )

    async def top_spenders(self, request: web.Request) -> web.Response:
        """The customers who spent the most in a calendar month (UTC), most first."""
        month = _date_param(request, "month", self._clock.now().date()).replace(day=1)
        limit = _int_param(request, "limit", 10, 1, 100)
        currency = self._policy.current().currency
        rows = await (await self._store()).top_spenders(month, currency, limit)
        return _json(
            {
                "month": month.isoformat(),
                "currency": currency,
                "spenders": [views.spender_view(r) for r in rows],
            }
        )

    async def blocked_now(self, request: web.Request) -> web.Response:
        """Customers a quota, a blocking spend cap or sustained rate limiting refuses now (the
        live block episodes)."""
        if self._blocked is None:
            raise NotFound("this process does not read block episodes")
        limit = _int_param(request, "limit", 50, 1, MAX_PAGE)
        found = await self._blocked.read(self._clock.now(), limit)
        currency = self._policy.current().currency
        return _json(
            {
                "count": found.count,
                "blocked": [views.blocked_view(e, currency) for e in found.episodes],
            }
        )

    # ---- tokens and audit (operators) --------------------------------------------------
    async def tokens(self, request: web.Request) -> web.Response:
        return _json({"tokens": [token_view(t) for t in self._admin.tokens()]})

    async def create_token(self, request: web.Request) -> web.Response:
        issued = await self._admin.create_token(self.actor(request), await _body(request))
        return _json({**issued.view, "token": issued.secret}, status=201)

    async def revoke_token(self, request: web.Request) -> web.Response:
        view = await self._admin.revoke_token(self.actor(request), request.match_info["token"])
        return _json(dict(view))

    async def audit(self, request: web.Request) -> web.Response:
        limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
        after = request.query.get("after")
        if after is not None and not _stream_id(after):
            raise InputError.one("after", "expected an audit entry id such as 1700000000000-0")
        rows = await self._admin.audit_log(after=after, limit=limit)
        entries = [{"id": entry_id, **_decoded(fields)} for entry_id, fields in rows]
        following = entries[-1]["id"] if len(entries) == limit else None
        return _json({"entries": entries, "next": following})


def _stream_id(text: str) -> bool:
    ms, _, seq = text.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(text) < 40


def _decoded(fields: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = dict(fields)
    for name in ("before", "after"):
        if name in fields:
            try:
                out[name] = json.loads(fields[name])
            except json.JSONDecodeError:
                out[name] = fields[name]
    return out


def _cap(cap: SpendCap | None) -> dict[str, object] | None:
    if cap is None or cap.amount_nano is None:
        return None
    return {"amount": format_nano(cap.amount_nano), "action": cap.action.value}


def _cap_adjustment(
    customer: Customer, effective: SpendCap | None, currency: str
) -> dict[str, object]:
    """Whether the plan overrode part of the customer's own cap (`adjusted`), and why (`note`):
    an own cap above the plan's current ceiling is enforced at the ceiling, and under a plan
    that blocks it blocks too (caps set before a plan change, or before these rules)."""
    own = customer.spend_cap
    notes: list[str] = []
    if own is not None and effective is not None and effective.amount_nano is not None:
        if effective.amount_nano < own.amount_nano:
            notes.append(
                f"your cap of {format_money(own.amount_nano, currency)} is above plan "
                f"'{customer.plan}''s ceiling; {format_money(effective.amount_nano, currency)} "
                "applies"
            )
        if own.action is CapAction.ALERT and effective.action is CapAction.BLOCK:
            notes.append(f"plan '{customer.plan}' blocks at its cap, so your cap blocks too")
    return {"adjusted": bool(notes), "note": "; ".join(notes) or None}


def _with_today(
    points: list[DailyPoint], today: date, live_used: int, period_start: date
) -> list[DailyPoint]:
    """History from the billing store, with today's point made consistent with the live
    counter: the period's live total minus the billed days before today (never negative)."""
    before = [p for p in points if p.day < today]
    billed_in_period = sum(p.quantity for p in before if p.day >= period_start)
    return [*before, DailyPoint(today, max(live_used - billed_in_period, 0))]
