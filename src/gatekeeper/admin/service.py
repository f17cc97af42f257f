"""The admin service: every change an operator or a customer makes through the API.

Each change is computed on the directory's current state, validated by composing it into the
policy file and parsing the result with the file's own parser (so the API accepts exactly what
the file would), then committed with its audit record and an invalidation message in one Redis
transaction. The acting process applies it at once; every other process on the message.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gatekeeper.access import Actor, Role, TokenRecord, new_secret, secret_hash
from gatekeeper.admin.errors import Conflict, FieldError, InputError, NotFound
from gatekeeper.clock import Clock
from gatekeeper.config.compose import Changes, Doc, compose_policy, to_plain
from gatekeeper.config.errors import ConfigError
from gatekeeper.config.yamlsrc import YMap, key_path
from gatekeeper.controls import LivePolicy
from gatekeeper.events import AlertKind
from gatekeeper.model import Policy, frozen_map
from gatekeeper.notify.addresses import url_host_problem
from gatekeeper.notify.signing import generate_secret
from gatekeeper.store.directory import AuditRecord, DirectoryState, DirectoryStore, Mutation

__all__ = ["CUSTOMER_FIELDS", "AdminService", "IssuedSecret"]

CUSTOMER_FIELDS = ("plan", "billing_day", "overrides", "grants", "description")
PLAN_FIELDS = ("entitlements", "rate_limits", "spend_cap", "description")
KEY_PREFIX = "gk_"
TOKEN_PREFIX = "gkt_"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KINDS = frozenset(kind.value for kind in AlertKind)
MAX_WEBHOOKS = 10


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A key, token or webhook secret just created: `secret` is shown once, never stored."""

    id: str
    secret: str
    view: Mapping[str, object]


def _short(secret: str) -> str:
    """The recognisable start of a secret for lists: `gk_AbC1…`."""
    return secret[: secret.find("_") + 6] + "…"


def _object(body: object, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InputError.one("body", "expected a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InputError.one(unknown[0], f"unknown field (expected one of {', '.join(allowed)})")
    return dict(body)


class AdminService:
    """allow_private_webhooks: customers' webhook endpoints may name internal hosts
    (`alerts.allow_private_customer_webhooks`); off, such URLs are refused (SSRF)."""

    def __init__(
        self,
        *,
        policy: LivePolicy,
        directory: DirectoryStore,
        clock: Clock,
        allow_private_webhooks: bool = False,
    ) -> None:
        self._policy = policy
        self._directory = directory
        self._clock = clock
        self._allow_private_webhooks = allow_private_webhooks
        self._state = DirectoryState()

    # ---- state -------------------------------------------------------------------------
    async def refresh(self) -> DirectoryState:
        """Load the directory and apply it to the live policy. Raises redis errors."""
        state = await self._directory.load()
        self._apply(state)
        return state

    def _apply(self, state: DirectoryState) -> None:
        self._state = state
        self._policy.set_changes(state.changes)

    @property
    def policy(self) -> Policy:
        return self._policy.current()

    def token(self, secret: str) -> TokenRecord | None:
        """The live (not revoked) token record of a bearer secret, or None."""
        record = self._state.tokens.get(secret_hash(secret))
        return None if record is None or record.revoked else record

    def tokens(self) -> list[TokenRecord]:
        return sorted(self._state.tokens.values(), key=lambda t: (t.created_at, t.id))

    def webhooks(self, customer_id: str) -> tuple[Mapping[str, object], ...]:
        return self._state.webhooks.get(customer_id, ())

    def customer_source(self, customer_id: str) -> str:
        """`api` when the directory holds the customer's document, else `file`."""
        return "api" if customer_id in self._state.changes.customers else "file"

    def plan_source(self, name: str) -> str:
        return "api" if name in self._state.changes.plans else "file"

    def _root(self) -> YMap:
        root = self._policy.root
        if root is None:
            raise Conflict("this policy was not loaded from a file; it cannot be changed")
        return root

    def _doc(self, state: DirectoryState, section: str, name: str) -> dict[str, Any] | None:
        """The current document of a plan or customer: the directory's, else the file's."""
        changes = state.changes.plans if section == "plans" else state.changes.customers
        if name in changes:
            doc = changes[name]
            return None if doc is None else copy.deepcopy(dict(doc))
        node = self._root().get(section)
        entry = node.entries.get(name) if isinstance(node, YMap) else None
        if entry is None:
            return None
        plain = to_plain(entry.value)
        return plain if isinstance(plain, dict) else {}

    def customer_doc(self, customer_id: str) -> dict[str, Any] | None:
        return self._doc(self._state, "customers", customer_id)

    def plan_doc(self, name: str) -> dict[str, Any] | None:
        return self._doc(self._state, "plans", name)

    # ---- validation and commit ---------------------------------------------------------
    def _validate(
        self,
        state: DirectoryState,
        section: str,
        name: str,
        doc: Doc | None,
        rename: Callable[[str], str] = lambda field: field,
    ) -> Policy:
        """The policy with the entry set; raises InputError (its own fields) or Conflict."""
        plans = dict(state.changes.plans)
        customers = dict(state.changes.customers)
        (plans if section == "plans" else customers)[name] = doc
        try:
            return compose_policy(
                self._root(), Changes(plans=frozen_map(plans), customers=frozen_map(customers))
            )
        except ConfigError as exc:
            prefix = key_path(section, name)
            own: list[FieldError] = []
            other: list[str] = []
            for issue in exc.issues:
                if issue.path == prefix:
                    own.append(FieldError("id", issue.message))
                elif issue.path.startswith((prefix + ".", prefix + "[")):
                    own.append(FieldError(rename(issue.path[len(prefix) + 1 :]), issue.message))
                else:
                    other.append(f"{issue.path}: {issue.message}")
            if own:
                raise InputError(own) from None
            raise Conflict("; ".join(other)) from None

    async def _commit(self, compute: Callable[[DirectoryState], Mutation[Any]]) -> Any:
        result = await self._directory.change(compute)
        await self.refresh()
        return result

    def _audit(
        self, actor: Actor, what: str, target: str, before: object, after: object
    ) -> AuditRecord:
        return AuditRecord(actor.name, what, target, before, after, self._clock.now())

    @staticmethod
    def _require_admin(actor: Actor) -> None:
        if not actor.may_write:
            raise PermissionError("this token may not change operator data")

    def _require_manage(self, actor: Actor, customer_id: str) -> None:
        if not actor.may_see(customer_id) or customer_id not in self.policy.customers:
            raise NotFound(f"no customer {customer_id!r}")
        if not actor.may_manage(customer_id):
            raise PermissionError("this token may not change this customer")

    async def _edit_customer(
        self,
        actor: Actor,
        customer_id: str,
        what: str,
        edit: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, Any]],
        *,
        rename: Callable[[str], str] = lambda field: field,
        audited: Callable[[dict[str, Any]], object] = lambda doc: doc,
    ) -> Any:
        """Commit `edit(the customer's document) -> (new document, or None to delete; result)`.

        NotFound when there is no such customer; the new document is validated (`rename` maps
        its issue paths to the request's fields) and audited (`audited` picks what is recorded
        of the documents before and after). Returns the edit's result.
        """

        def compute(state: DirectoryState) -> Mutation[Any]:
            before = self._doc(state, "customers", customer_id)
            if before is None:
                raise NotFound(f"no customer {customer_id!r}")
            after, result = edit(copy.deepcopy(before))
            self._validate(state, "customers", customer_id, after, rename)
            return Mutation(
                result=result,
                customers={customer_id: after},
                audit=(
                    self._audit(
                        actor,
                        what,
                        f"customer:{customer_id}",
                        audited(before),
                        None if after is None else audited(after),
                    ),
                ),
            )

        return await self._commit(compute)

    # ---- customers ---------------------------------------------------------------------
    async def put_customer(
        self, actor: Actor, customer_id: str, body: object, *, create_only: bool = False
    ) -> bool:
        """Create or replace a customer's editable fields; True when it was created.

        API keys and the customer's own spend cap are kept (they have their own endpoints).
        """
        self._require_admin(actor)
        fields = _object(body, CUSTOMER_FIELDS)
        if not _ID.fullmatch(customer_id):
            raise InputError.one("id", "customer ids match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (≤ 128)")

        def compute(state: DirectoryState) -> Mutation[bool]:
            before = self._doc(state, "customers", customer_id)
            if before is not None and create_only:
                raise Conflict(f"customer {customer_id!r} already exists")
            after = dict(fields)
            for kept in ("api_keys", "spend_cap"):
                if before is not None and kept in before:
                    after[kept] = before[kept]
            self._validate(state, "customers", customer_id, after)
            what = "customer.create" if before is None else "customer.replace"
            return Mutation(
                result=before is None,
                customers={customer_id: after},
                audit=(self._audit(actor, what, f"customer:{customer_id}", before, after),),
            )

        created: bool = await self._commit(compute)
        return created

    async def patch_customer(self, actor: Actor, customer_id: str, body: object) -> None:
        """Change only the given editable fields (null removes an optional field)."""
        self._require_admin(actor)
        fields = _object(body, CUSTOMER_FIELDS)

        def edit(doc: dict[str, Any]) -> tuple[dict[str, Any], None]:
            for name, value in fields.items():
                if value is None:
                    doc.pop(name, None)
                else:
                    doc[name] = value
            return doc, None

        await self._edit_customer(actor, customer_id, "customer.update", edit)

    async def delete_customer(self, actor: Actor, customer_id: str) -> None:
        self._require_admin(actor)
        await self._edit_customer(actor, customer_id, "customer.delete", lambda doc: (None, None))

    # ---- plans -------------------------------------------------------------------------
    async def put_plan(self, actor: Actor, name: str, body: object) -> bool:
        """Create or replace a plan (its customers follow at once); True when created."""
        self._require_admin(actor)
        doc = _object(body, PLAN_FIELDS)
        if not _ID.fullmatch(name):
            raise InputError.one("name", "plan names are letters, digits, '.', '_', '-'")

        def compute(state: DirectoryState) -> Mutation[bool]:
            before = self._doc(state, "plans", name)
            self._validate(state, "plans", name, doc)
            what = "plan.create" if before is None else "plan.replace"
            return Mutation(
                result=before is None,
                plans={name: doc},
                audit=(self._audit(actor, what, f"plan:{name}", before, doc),),
            )

        created: bool = await self._commit(compute)
        return created

    async def delete_plan(self, actor: Actor, name: str) -> None:
        self._require_admin(actor)

        def compute(state: DirectoryState) -> Mutation[None]:
            before = self._doc(state, "plans", name)
            if before is None:
                raise NotFound(f"no plan {name!r}")
            users = sorted(c.id for c in self.policy.customers.values() if c.plan == name)
            if users:
                raise Conflict(f"plan {name!r} is in use by customers: {', '.join(users[:10])}")
            self._validate(state, "plans", name, None)
            return Mutation(
                result=None,
                plans={name: None},
                audit=(self._audit(actor, "plan.delete", f"plan:{name}", before, None),),
            )

        await self._commit(compute)

    # ---- API keys ----------------------------------------------------------------------
    async def _edit_keys(
        self,
        actor: Actor,
        customer_id: str,
        what: str,
        change: Callable[[list[dict[str, Any]]], object],
    ) -> Any:
        """Commit `change(the customer's key records)`, which edits them in place."""

        def edit(doc: dict[str, Any]) -> tuple[dict[str, Any], object]:
            keys: list[dict[str, Any]] = list(doc.get("api_keys") or [])
            result = change(keys)
            doc["api_keys"] = keys
            return doc, result

        def rename(field: str) -> str:
            return field.rsplit(".", 1)[-1] if field.startswith("api_keys[") else field

        return await self._edit_customer(
            actor,
            customer_id,
            what,
            edit,
            rename=rename,
            audited=lambda doc: doc.get("api_keys") or [],
        )

    def _new_key(
        self, keys: list[dict[str, Any]], key_id: str | None
    ) -> tuple[str, dict[str, Any]]:
        secret = new_secret(KEY_PREFIX)
        kid = key_id or f"key-{secrets.token_hex(4)}"
        record = {
            "id": kid,
            "sha256": secret_hash(secret),
            "label": _short(secret),
            "created_at": self._clock.now().isoformat(),
        }
        keys.append(record)
        return secret, record

    async def create_key(
        self, actor: Actor, customer_id: str, body: object | None = None
    ) -> IssuedSecret:
        self._require_manage(actor, customer_id)
        fields = _object(body or {}, ("id",))
        key_id = fields.get("id")
        if key_id is not None and not isinstance(key_id, str):
            raise InputError.one("id", "expected a string")

        def change(keys: list[dict[str, Any]]) -> object:
            if key_id is not None and any(k.get("id") == key_id for k in keys):
                raise Conflict(f"key id {key_id!r} is taken")
            secret, record = self._new_key(keys, key_id)
            return IssuedSecret(record["id"], secret, _key_view(record))

        issued: IssuedSecret = await self._edit_keys(actor, customer_id, "api_key.create", change)
        return issued

    async def revoke_key(self, actor: Actor, customer_id: str, key_id: str) -> Mapping[str, object]:
        self._require_manage(actor, customer_id)

        def change(keys: list[dict[str, Any]]) -> object:
            for key in keys:
                if key.get("id") == key_id:
                    key["revoked"] = True
                    return _key_view(key)
            raise NotFound(f"no key {key_id!r}")

        view: Mapping[str, object] = await self._edit_keys(
            actor, customer_id, "api_key.revoke", change
        )
        return view

    async def rotate_key(self, actor: Actor, customer_id: str, key_id: str) -> IssuedSecret:
        """A new key replaces `key_id`, which is revoked in the same change."""
        self._require_manage(actor, customer_id)

        def change(keys: list[dict[str, Any]]) -> object:
            old = next((k for k in keys if k.get("id") == key_id), None)
            if old is None:
                raise NotFound(f"no key {key_id!r}")
            if old.get("revoked"):
                raise Conflict(f"key {key_id!r} is already revoked")
            old["revoked"] = True
            secret, record = self._new_key(keys, None)
            return IssuedSecret(record["id"], secret, {**_key_view(record), "replaces": key_id})

        issued: IssuedSecret = await self._edit_keys(actor, customer_id, "api_key.rotate", change)
        return issued

    # ---- alert thresholds (self-service) -----------------------------------------------
    async def set_thresholds(self, actor: Actor, customer_id: str, body: object) -> None:
        """`{"features": {feature: [percent, ...]}, "spend": [percent, ...]}`: the customer's
        own alert thresholds, written as overrides (validated like the file's)."""
        self._require_manage(actor, customer_id)
        fields = _object(body, ("features", "spend"))
        features = fields.get("features") or {}
        if not isinstance(features, dict):
            raise InputError.one("features", "expected an object of feature -> [percent, ...]")
        customer = self.policy.customers[customer_id]
        for name in features:
            if name not in customer.entitlements.metered:
                raise InputError.one(f"features.{name}", "not a metered feature of this plan")
        if "spend" in fields and customer.entitlements.spend_cap is None:
            raise InputError.one("spend", "this customer's plan has no spend cap")

        def rename(field: str) -> str:
            if field.startswith("overrides.spend_cap."):
                return "spend"
            if field.startswith("overrides."):
                return "features." + field.split(".")[1]
            return field

        def edit(doc: dict[str, Any]) -> tuple[dict[str, Any], None]:
            overrides = dict(doc.get("overrides") or {})
            for name, thresholds in features.items():
                entry = overrides.get(name)
                entry = dict(entry) if isinstance(entry, dict) else {}
                entry["alert_thresholds"] = thresholds
                overrides[name] = entry
            if "spend" in fields:
                cap = overrides.get("spend_cap")
                cap = dict(cap) if isinstance(cap, dict) else {}
                cap["alert_thresholds"] = fields["spend"]
                overrides["spend_cap"] = cap
            doc["overrides"] = overrides
            return doc, None

        await self._edit_customer(
            actor,
            customer_id,
            "alert_thresholds.set",
            edit,
            rename=rename,
            audited=lambda doc: doc.get("overrides"),
        )

    # ---- tokens ------------------------------------------------------------------------
    async def create_token(self, actor: Actor, body: object) -> IssuedSecret:
        self._require_admin(actor)
        fields = _object(body, ("role", "customer", "name"))
        try:
            role = Role(str(fields.get("role")))
        except ValueError:
            raise InputError.one("role", "expected admin, read or customer") from None
        customer = fields.get("customer")
        if role is Role.CUSTOMER:
            if not isinstance(customer, str) or customer not in self.policy.customers:
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
                    self._audit(
                        actor, "token.create", f"token:{record.id}", None, token_view(record)
                    ),
                ),
            )

        await self._commit(compute)
        return IssuedSecret(record.id, secret, token_view(record))

    async def revoke_token(self, actor: Actor, token_id: str) -> Mapping[str, object]:
        self._require_admin(actor)

        def compute(state: DirectoryState) -> Mutation[Mapping[str, object]]:
            found = next((t for t in state.tokens.values() if t.id == token_id), None)
            if found is None:
                raise NotFound(f"no token {token_id!r}")
            revoked = TokenRecord(**{**_fields(found), "revoked": True})
            return Mutation(
                result=token_view(revoked),
                tokens={found.sha256: revoked},
                audit=(
                    self._audit(
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

    # ---- customer webhooks -------------------------------------------------------------
    async def add_webhook(self, actor: Actor, customer_id: str, body: object) -> IssuedSecret:
        self._require_manage(actor, customer_id)
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

        def compute(state: DirectoryState) -> Mutation[None]:
            hooks = tuple(state.webhooks.get(customer_id, ()))
            if len(hooks) >= MAX_WEBHOOKS:
                raise Conflict(f"at most {MAX_WEBHOOKS} webhook endpoints per customer")
            return Mutation(
                result=None,
                webhooks={customer_id: (*hooks, hook)},
                audit=(
                    self._audit(
                        actor, "webhook.create", f"customer:{customer_id}", None, webhook_view(hook)
                    ),
                ),
            )

        await self._commit(compute)
        return IssuedSecret(str(hook["id"]), secret, webhook_view(hook))

    async def remove_webhook(self, actor: Actor, customer_id: str, hook_id: str) -> None:
        self._require_manage(actor, customer_id)

        def compute(state: DirectoryState) -> Mutation[None]:
            hooks = tuple(state.webhooks.get(customer_id, ()))
            kept = tuple(h for h in hooks if h.get("id") != hook_id)
            if len(kept) == len(hooks):
                raise NotFound(f"no webhook {hook_id!r}")
            gone = next(h for h in hooks if h.get("id") == hook_id)
            return Mutation(
                result=None,
                webhooks={customer_id: kept},
                audit=(
                    self._audit(
                        actor, "webhook.delete", f"customer:{customer_id}", webhook_view(gone), None
                    ),
                ),
            )

        await self._commit(compute)

    async def audit(self, *, after: str | None, limit: int) -> list[tuple[str, dict[str, str]]]:
        return await self._directory.audit(after=after, limit=limit)


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


def _key_view(record: Mapping[str, Any]) -> dict[str, object]:
    created = record.get("created_at")
    if isinstance(created, datetime):
        created = created.isoformat()
    return {
        "id": record.get("id"),
        "label": record.get("label", ""),
        "revoked": bool(record.get("revoked", False)),
        "created_at": created,
    }
