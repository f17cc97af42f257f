"""The admin service: every change an operator or a customer makes through the API.

Customers, their keys, thresholds, caps and webhook endpoints are records of their own
(`admin.customers`). Plans and tokens are small and read whole (`store.directory`): a plan is
validated by composing it into the policy file's catalog (features, prices, plans, routes —
never the file's customers) and parsing that with `check-config`'s own parser, then committed
with its audit record and an invalidation message in one Redis transaction. The acting process
applies a change at once; every other process on the message.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from gatekeeper.access import Actor, Role, TokenRecord, new_secret, secret_hash
from gatekeeper.admin.customers import (
    CUSTOMER_FIELDS,
    ID,
    CustomerAdmin,
    IssuedSecret,
    object_body,
)
from gatekeeper.admin.errors import Conflict, FieldError, InputError, NotFound
from gatekeeper.clock import Clock
from gatekeeper.config.compose import Doc, to_plain
from gatekeeper.config.errors import ConfigError
from gatekeeper.config.yamlsrc import YMap, key_path
from gatekeeper.directory.catalog import build_catalog
from gatekeeper.directory.live import LiveDirectory
from gatekeeper.errors import StoreUnavailable
from gatekeeper.events import AlertKind
from gatekeeper.model import Policy
from gatekeeper.notify.addresses import url_host_problem
from gatekeeper.notify.signing import generate_secret
from gatekeeper.store.customers import CustomerRecord, RecordChange, Source
from gatekeeper.store.directory import DirectoryState, DirectoryStore, Mutation

__all__ = ["CUSTOMER_FIELDS", "AdminService", "IssuedSecret"]

PLAN_FIELDS = ("entitlements", "rate_limits", "spend_cap", "description")
TOKEN_PREFIX = "gkt_"
_KINDS = frozenset(kind.value for kind in AlertKind)
MAX_WEBHOOKS = 10
_object = object_body
log = logging.getLogger(__name__)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


class AdminService(CustomerAdmin):
    """`root`: the policy file's catalog (its parsed document without `customers:`), which
    plans set through the API are composed into. allow_private_webhooks: customers' webhook
    endpoints may name internal hosts (`alerts.allow_private_customer_webhooks`); off, such
    URLs are refused (SSRF)."""

    def __init__(
        self,
        *,
        directory: LiveDirectory,
        store: DirectoryStore,
        root: YMap | None,
        clock: Clock,
        allow_private_webhooks: bool = False,
    ) -> None:
        super().__init__(directory=directory, clock=clock)
        self._store = store
        self._root = root
        self._allow_private_webhooks = allow_private_webhooks
        self._state = DirectoryState()
        self._built: tuple[YMap, dict[str, Doc | None]] | None = None  # what the catalog is of
        self.rejected: dict[str, str] = {}  # "plans.x" -> why the API's plan was left out

    # ---- state -------------------------------------------------------------------------
    async def refresh(self) -> DirectoryState:
        """Load plans and tokens; swap the catalog. Raises redis errors."""
        state = await self._store.load()
        self._apply(state)
        return state

    def set_root(self, root: YMap | None) -> None:
        """The policy file was read again: its catalog, with the API's plans, from now on."""
        self._root = root
        self._built = None
        self._apply(self._state)

    def _apply(self, state: DirectoryState) -> None:
        """Swap the catalog when the file or the API's plans changed (a token change keeps
        it: a new catalog makes every process plan its customers again)."""
        self._state = state
        plans = dict(state.plans)
        built = self._built
        if self._root is None or (built and built[0] is self._root and built[1] == plans):
            return
        self._built = (self._root, dict(plans))
        self.rejected = {}
        for _ in range(len(plans) + 1):
            try:
                self._directory.set_catalog(build_catalog(self._root, plans))
                return
            except ConfigError as exc:  # leave the API's plans at fault out, keep them stored
                faulty = {
                    name
                    for issue in exc.issues
                    for name in plans
                    if _under(issue.path, key_path("plans", name))
                } or set(plans)
                for name in faulty:
                    plans.pop(name)
                    self.rejected[key_path("plans", name)] = str(exc)
                    log.error("plan %s set through the API left out: %s", name, exc)

    @property
    def policy(self) -> Policy:
        return self._directory.current()

    def token(self, secret: str) -> TokenRecord | None:
        """The live (not revoked) token record of a bearer secret, or None."""
        record = self._state.tokens.get(secret_hash(secret))
        return None if record is None or record.revoked else record

    def tokens(self) -> list[TokenRecord]:
        return sorted(self._state.tokens.values(), key=lambda t: (t.created_at, t.id))

    def plan_source(self, name: str) -> str:
        return "api" if name in self._state.plans else "file"

    def _require_root(self) -> YMap:
        if self._root is None:
            raise Conflict("this policy was not loaded from a file; it cannot be changed")
        return self._root

    def _plan_doc(self, state: DirectoryState, name: str) -> dict[str, Any] | None:
        if name in state.plans:
            doc = state.plans[name]
            return None if doc is None else copy.deepcopy(dict(doc))
        node = self._require_root().get("plans")
        entry = node.entries.get(name) if isinstance(node, YMap) else None
        if entry is None:
            return None
        plain = to_plain(entry.value)
        return plain if isinstance(plain, dict) else {}

    def plan_doc(self, name: str) -> dict[str, Any] | None:
        return self._plan_doc(self._state, name)

    async def _commit(self, compute: Any) -> Any:
        try:
            result = await self._store.change(compute)
            await self.refresh()
        except RedisError as exc:
            raise StoreUnavailable(f"directory unavailable: {exc}") from exc
        return result

    # ---- plans -------------------------------------------------------------------------
    def _validate_plan(self, state: DirectoryState, name: str, doc: Doc | None) -> Policy:
        """The catalog with the plan set; raises InputError (its own fields) or Conflict."""
        plans = dict(state.plans)
        plans[name] = doc
        try:
            return build_catalog(self._require_root(), plans)
        except ConfigError as exc:
            prefix = key_path("plans", name)
            own: list[FieldError] = []
            other: list[str] = []
            for issue in exc.issues:
                if issue.path == prefix:
                    own.append(FieldError("id", issue.message))
                elif _under(issue.path, prefix):
                    own.append(FieldError(issue.path[len(prefix) + 1 :], issue.message))
                else:
                    other.append(f"{issue.path}: {issue.message}")
            if own:
                raise InputError(own) from None
            raise Conflict("; ".join(other)) from None

    async def put_plan(self, actor: Actor, name: str, body: object) -> bool:
        """Create or replace a plan (its customers follow, each when next asked for); True
        when created."""
        self.require_admin(actor)
        doc = _object(body, PLAN_FIELDS)
        if not ID.fullmatch(name):
            raise InputError.one("name", "plan names are letters, digits, '.', '_', '-'")

        def compute(state: DirectoryState) -> Mutation[bool]:
            before = self._plan_doc(state, name)
            self._validate_plan(state, name, doc)
            what = "plan.create" if before is None else "plan.replace"
            return Mutation(
                result=before is None,
                plans={name: doc},
                audit=(self.audit(actor, what, f"plan:{name}", before, doc),),
            )

        created: bool = await self._commit(compute)
        return created

    async def delete_plan(self, actor: Actor, name: str) -> None:
        self.require_admin(actor)
        users = await self._records.page(after=None, limit=10, plan=name)
        if users:
            raise Conflict(f"plan {name!r} is in use by customers: {', '.join(users)}")

        def compute(state: DirectoryState) -> Mutation[None]:
            before = self._plan_doc(state, name)
            if before is None:
                raise NotFound(f"no plan {name!r}")
            self._validate_plan(state, name, None)
            return Mutation(
                result=None,
                plans={name: None},
                audit=(self.audit(actor, "plan.delete", f"plan:{name}", before, None),),
            )

        await self._commit(compute)

    # ---- tokens ------------------------------------------------------------------------
    async def create_token(self, actor: Actor, body: object) -> IssuedSecret:
        self.require_admin(actor)
        fields = _object(body, ("role", "customer", "name"))
        try:
            role = Role(str(fields.get("role")))
        except ValueError:
            raise InputError.one("role", "expected admin, read or customer") from None
        customer = fields.get("customer")
        if role is Role.CUSTOMER:
            if not isinstance(customer, str) or await self._directory.customer(customer) is None:
                raise InputError.one("customer", "a customer token needs an existing customer")
        elif customer is not None:
            raise InputError.one("customer", "only customer tokens name a customer")
        name = fields.get("name", "")
        if not isinstance(name, str) or len(name) > 200:
            raise InputError.one("name", "expected a string of at most 200 characters")
        secret = new_secret(TOKEN_PREFIX)
        record = TokenRecord(
            id=f"tok-{secrets.token_hex(4)}",
            role=role,
            sha256=secret_hash(secret),
            customer=customer if role is Role.CUSTOMER else None,
            created_at=self._clock.now(),
            created_by=actor.name,
            name=name,
        )

        def compute(state: DirectoryState) -> Mutation[None]:
            return Mutation(
                result=None,
                tokens={record.sha256: record},
                audit=(
                    self.audit(
                        actor, "token.create", f"token:{record.id}", None, token_view(record)
                    ),
                ),
            )

        await self._commit(compute)
        return IssuedSecret(record.id, secret, token_view(record))

    async def revoke_token(self, actor: Actor, token_id: str) -> Mapping[str, object]:
        self.require_admin(actor)

        def compute(state: DirectoryState) -> Mutation[Mapping[str, object]]:
            found = next((t for t in state.tokens.values() if t.id == token_id), None)
            if found is None:
                raise NotFound(f"no token {token_id!r}")
            revoked = TokenRecord(**{**_fields(found), "revoked": True})
            return Mutation(
                result=token_view(revoked),
                tokens={found.sha256: revoked},
                audit=(
                    self.audit(
                        actor,
                        "token.revoke",
                        f"token:{token_id}",
                        token_view(found),
                        token_view(revoked),
                    ),
                ),
            )

        view: Mapping[str, object] = await self._commit(compute)
        return view

    # ---- customer webhooks (part of the customer's record) ------------------------------
    async def webhooks(self, customer_id: str) -> tuple[Mapping[str, object], ...]:
        record = await self._directory.record(customer_id)
        return () if record is None else record.webhooks

    def _edit_webhooks(
        self,
        actor: Actor,
        customer_id: str,
        edit: Callable[[tuple[Mapping[str, Any], ...]], tuple[Any, ...]],
        what: str,
        before_after: Callable[[tuple[Mapping[str, Any], ...]], tuple[object, object]],
    ) -> Callable[[CustomerRecord | None], RecordChange[None]]:
        """The change of the customer's record that replaces its webhooks by `edit(them)`."""

        def compute(before: CustomerRecord | None) -> RecordChange[None]:
            if before is None:
                raise NotFound(f"no customer {customer_id!r}")
            old, new = before_after(before.webhooks)
            record = dataclasses.replace(
                before,
                webhooks=edit(before.webhooks),
                source=Source.API,
                updated_at=self._clock.now().isoformat(),
            )
            audit = self.audit(actor, what, f"customer:{customer_id}", old, new)
            return RecordChange(None, record, audit)

        return compute

    async def add_webhook(self, actor: Actor, customer_id: str, body: object) -> IssuedSecret:
        await self.require_manage(actor, customer_id)
        fields = _object(body, ("url", "kinds"))
        url = fields.get("url")
        if not isinstance(url, str) or not re.fullmatch(r"https?://[^\s/$.?#][^\s]*", url):
            raise InputError.one("url", "expected an http:// or https:// URL")
        problem = None if self._allow_private_webhooks else url_host_problem(url)
        if problem is not None:  # names resolved inside are refused at delivery (notify/http.py)
            raise InputError.one("url", problem)
        kinds = fields.get("kinds") or []
        if not isinstance(kinds, list) or any(k not in _KINDS for k in kinds):
            raise InputError.one("kinds", f"expected a list of: {', '.join(sorted(_KINDS))}")
        secret = generate_secret()  # whsec_ + standard base64, as Standard Webhooks wants
        hook = {
            "id": f"wh-{secrets.token_hex(4)}",
            "url": url,
            "kinds": sorted(set(kinds)),
            "secret": secret,
            "created_at": self._clock.now().isoformat(),
        }

        def add(hooks: tuple[Mapping[str, Any], ...]) -> tuple[Any, ...]:
            if len(hooks) >= MAX_WEBHOOKS:
                raise Conflict(f"at most {MAX_WEBHOOKS} webhook endpoints per customer")
            return (*hooks, hook)

        await self.commit(
            customer_id,
            self._edit_webhooks(
                actor, customer_id, add, "webhook.create", lambda _: (None, webhook_view(hook))
            ),
        )
        return IssuedSecret(str(hook["id"]), secret, webhook_view(hook))

    async def remove_webhook(self, actor: Actor, customer_id: str, hook_id: str) -> None:
        await self.require_manage(actor, customer_id)

        def gone(hooks: tuple[Mapping[str, Any], ...]) -> Mapping[str, Any]:
            found = next((h for h in hooks if h.get("id") == hook_id), None)
            if found is None:
                raise NotFound(f"no webhook {hook_id!r}")
            return found

        def drop(hooks: tuple[Mapping[str, Any], ...]) -> tuple[Any, ...]:
            target = gone(hooks)
            return tuple(h for h in hooks if h is not target)

        await self.commit(
            customer_id,
            self._edit_webhooks(
                actor,
                customer_id,
                drop,
                "webhook.delete",
                lambda hooks: (webhook_view(gone(hooks)), None),
            ),
        )

    async def audit_log(self, *, after: str | None, limit: int) -> list[tuple[str, dict[str, str]]]:
        return await self._store.audit(after=after, limit=limit)


def _fields(record: TokenRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def token_view(record: TokenRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "role": record.role.value,
        "customer": record.customer,
        "name": record.name,
        "created_at": record.created_at.isoformat(),
        "created_by": record.created_by,
        "revoked": record.revoked,
    }


def webhook_view(hook: Mapping[str, object]) -> dict[str, object]:
    return {k: hook.get(k) for k in ("id", "url", "kinds", "created_at")}
