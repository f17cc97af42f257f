"""Changes to one customer: its document, API keys, alert thresholds and own spend cap.

Each change reads the customer's record, edits its document (the policy file's own shape),
validates the result with the file's parser for that one customer (`parse_customer`: the
customer's size, never the directory's) and writes it back with one compare-and-set that also
records the audit entry and announces the change (`store.customers`): O(1) whatever the number
of customers, durable before the caller is answered, applied on every process within a
pub/sub delivery.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from gatekeeper.access import Actor, new_secret, secret_hash
from gatekeeper.admin.errors import Conflict, FieldError, InputError, NotFound
from gatekeeper.clock import Clock
from gatekeeper.config.customers import parse_customer
from gatekeeper.config.errors import ConfigError
from gatekeeper.config.yamlsrc import key_path
from gatekeeper.directory.live import LiveDirectory
from gatekeeper.errors import StoreUnavailable
from gatekeeper.model import Customer
from gatekeeper.store.customers import (
    CustomerRecord,
    CustomerRecords,
    DirectoryConflict,
    RecordChange,
    Source,
)
from gatekeeper.store.directory import AuditRecord

__all__ = ["CUSTOMER_FIELDS", "CustomerAdmin", "IssuedSecret", "key_view", "object_body"]

CUSTOMER_FIELDS = ("plan", "billing_day", "overrides", "grants", "description", "metadata")
KEY_PREFIX = "gk_"
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_KEYS = 100  # API keys a customer may hold (revoked ones included)


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A key, token or webhook secret just created: `secret` is shown once, never stored."""

    id: str
    secret: str
    view: Mapping[str, object]


def short(secret: str) -> str:
    """The recognisable start of a secret for lists: `gk_AbC1…`."""
    return secret[: secret.find("_") + 6] + "…"


def object_body(body: object, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InputError.one("body", "expected a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InputError.one(unknown[0], f"unknown field (expected one of {', '.join(allowed)})")
    return dict(body)


Edit = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, Any]]


class CustomerAdmin:
    """The per-customer half of the admin service (see AdminService)."""

    def __init__(self, *, directory: LiveDirectory, clock: Clock) -> None:
        self._directory = directory
        self._records = directory.records
        self._clock = clock

    # ---- reads -------------------------------------------------------------------------
    @property
    def records(self) -> CustomerRecords:
        return self._records

    async def customer(self, customer_id: str) -> Customer | None:
        return await self._directory.customer(customer_id)

    async def customer_doc(self, customer_id: str) -> dict[str, Any] | None:
        record = await self._directory.record(customer_id)
        return None if record is None else copy.deepcopy(dict(record.doc))

    async def customer_source(self, customer_id: str) -> str:
        record = await self._directory.record(customer_id)
        return Source.FILE.value if record is None else record.source.value

    async def require_manage(self, actor: Actor, customer_id: str) -> Customer:
        customer = None
        if actor.may_see(customer_id):
            customer = await self._directory.customer(customer_id)
        if customer is None:
            raise NotFound(f"no customer {customer_id!r}")
        if not actor.may_manage(customer_id):
            raise PermissionError("this token may not change this customer")
        return customer

    @staticmethod
    def require_admin(actor: Actor) -> None:
        if not actor.may_write:
            raise PermissionError("this token may not change operator data")

    # ---- validation and commit ---------------------------------------------------------
    def validate(
        self, customer_id: str, doc: Mapping[str, Any], rename: Callable[[str], str]
    ) -> Customer:
        """The customer `doc` describes under the catalog in force; InputError naming every
        field at fault (paths relative to the document, mapped by `rename`)."""
        catalog = self._directory.current()
        try:
            return parse_customer(
                customer_id,
                doc,
                plans=catalog.plans,
                features=catalog.features,
                source="<admin API>",
                check_cap_ceiling=False,  # own caps are checked (and held) by SpendControls
            )
        except ConfigError as exc:
            prefix = key_path("customers", customer_id)
            errors = []
            for issue in exc.issues:
                if issue.path == prefix or not issue.path.startswith(prefix):
                    errors.append(FieldError("id", issue.message))
                else:
                    errors.append(FieldError(rename(issue.path[len(prefix) + 1 :]), issue.message))
            raise InputError(errors) from None

    @property
    def clock(self) -> Clock:
        return self._clock

    def audit(
        self, actor: Actor | str, what: str, target: str, before: object, after: object
    ) -> AuditRecord:
        """An audit record by `actor` (or an actor's name), now."""
        name = actor if isinstance(actor, str) else actor.name
        return AuditRecord(name, what, target, before, after, self._clock.now())

    async def commit(
        self, customer_id: str, compute: Callable[[CustomerRecord | None], RecordChange[Any]]
    ) -> Any:
        """One compare-and-set of the customer's record; applied here at once (the others
        on the invalidation message). Raises StoreUnavailable when Redis is down."""
        try:
            result = await self._records.change(
                customer_id, compute, channel=self._records.keys.invalidate_channel()
            )
        except DirectoryConflict as exc:
            raise Conflict(str(exc)) from None
        except RedisError as exc:
            raise StoreUnavailable(f"directory unavailable: {exc}") from exc
        self._directory.invalidate(customer_id)
        return result

    def record_for(
        self, customer_id: str, doc: dict[str, Any], before: CustomerRecord | None
    ) -> CustomerRecord:
        """The record that stores `doc` as changed through the API now."""
        return CustomerRecord(
            customer_id,
            doc,
            Source.API,
            updated_at=self._clock.now().astimezone(UTC).isoformat(),
            webhooks=before.webhooks if before else (),
        )

    async def edit_customer(
        self,
        actor: Actor,
        customer_id: str,
        what: str,
        edit: Edit,
        *,
        rename: Callable[[str], str] = lambda field: field,
        audited: Callable[[dict[str, Any]], object] = lambda doc: doc,
    ) -> Any:
        """Commit `edit(the customer's document) -> (new document, or None to delete; result)`.

        NotFound when there is no such customer; the new document is validated (`rename` maps
        its issue paths to the request's fields) and audited (`audited` picks what is recorded
        of the documents before and after). Returns the edit's result.
        """

        def compute(before: CustomerRecord | None) -> RecordChange[Any]:
            if before is None:
                raise NotFound(f"no customer {customer_id!r}")
            doc = copy.deepcopy(dict(before.doc))
            after, result = edit(copy.deepcopy(doc))
            if after is not None:
                self.validate(customer_id, after, rename)
            return RecordChange(
                result,
                None if after is None else self.record_for(customer_id, after, before),
                self.audit(
                    actor,
                    what,
                    f"customer:{customer_id}",
                    audited(doc),
                    None if after is None else audited(after),
                ),
            )

        return await self.commit(customer_id, compute)

    # ---- customers ---------------------------------------------------------------------
    async def put_customer(
        self, actor: Actor, customer_id: str, body: object, *, create_only: bool = False
    ) -> bool:
        """Create or replace a customer's editable fields; True when it was created.

        API keys and the customer's own spend cap are kept (they have their own endpoints).
        """
        self.require_admin(actor)
        fields = object_body(body, CUSTOMER_FIELDS)
        if not ID.fullmatch(customer_id):
            raise InputError.one("id", "customer ids match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (≤ 128)")

        def compute(before: CustomerRecord | None) -> RecordChange[bool]:
            if before is not None and create_only:
                raise Conflict(f"customer {customer_id!r} already exists")
            after = dict(fields)
            for kept in ("api_keys", "spend_cap"):
                if before is not None and kept in before.doc:
                    after[kept] = copy.deepcopy(before.doc[kept])
            self.validate(customer_id, after, lambda field: field)
            what = "customer.create" if before is None else "customer.replace"
            old = None if before is None else dict(before.doc)
            return RecordChange(
                before is None,
                self.record_for(customer_id, after, before),
                self.audit(actor, what, f"customer:{customer_id}", old, after),
            )

        created: bool = await self.commit(customer_id, compute)
        if created:  # an id the policy file also lists is the API's customer from now on
            await self._records.forget_seed(customer_id, removed=False)
        return created

    async def patch_customer(self, actor: Actor, customer_id: str, body: object) -> None:
        """Change only the given editable fields (null removes an optional field)."""
        self.require_admin(actor)
        fields = object_body(body, CUSTOMER_FIELDS)

        def edit(doc: dict[str, Any]) -> tuple[dict[str, Any], None]:
            for name, value in fields.items():
                if value is None:
                    doc.pop(name, None)
                else:
                    doc[name] = value
            return doc, None

        await self.edit_customer(actor, customer_id, "customer.update", edit)

    async def delete_customer(self, actor: Actor, customer_id: str) -> None:
        """Delete the customer; one the policy file lists is not brought back by a later seed."""
        self.require_admin(actor)
        record = await self._directory.record(customer_id)
        if record is not None and record.source is Source.FILE:
            await self._records.forget_seed(customer_id, removed=True)
        await self.edit_customer(actor, customer_id, "customer.delete", lambda doc: (None, None))

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

        return await self.edit_customer(
            actor,
            customer_id,
            what,
            edit,
            rename=rename,
            audited=lambda doc: doc.get("api_keys") or [],
        )

    def _new_key(
        self, keys: list[dict[str, Any]], key_id: str | None, expires_at: str | None
    ) -> tuple[str, dict[str, Any]]:
        if len(keys) >= MAX_KEYS:
            raise Conflict(f"at most {MAX_KEYS} API keys per customer (revoked ones count)")
        secret = new_secret(KEY_PREFIX)
        record = {
            "id": key_id or f"key-{secrets.token_hex(4)}",
            "sha256": secret_hash(secret),
            "label": short(secret),
            "created_at": self._clock.now().isoformat(),
        }
        if expires_at is not None:
            record["expires_at"] = expires_at
        keys.append(record)
        return secret, record

    def _expiry(self, fields: Mapping[str, Any]) -> str | None:
        raw = fields.get("expires_at")
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise InputError.one("expires_at", "expected an ISO 8601 date-time with a timezone")
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise InputError.one(
                "expires_at", "expected an ISO 8601 date-time with a timezone"
            ) from None
        if moment.tzinfo is None:
            raise InputError.one("expires_at", "needs a timezone, e.g. 2027-01-31T00:00:00Z")
        if moment <= self._clock.now():
            raise InputError.one("expires_at", "must be in the future")
        return moment.astimezone(UTC).isoformat()

    async def create_key(
        self, actor: Actor, customer_id: str, body: object | None = None
    ) -> IssuedSecret:
        await self.require_manage(actor, customer_id)
        fields = object_body(body or {}, ("id", "expires_at"))
        key_id = fields.get("id")
        if key_id is not None and (not isinstance(key_id, str) or not ID.fullmatch(key_id)):
            raise InputError.one("id", "expected letters, digits, '.', '_', '-' (≤ 128)")
        expires_at = self._expiry(fields)

        def change(keys: list[dict[str, Any]]) -> object:
            if key_id is not None and any(k.get("id") == key_id for k in keys):
                raise Conflict(f"key id {key_id!r} is taken")
            secret, record = self._new_key(keys, key_id, expires_at)
            return IssuedSecret(record["id"], secret, key_view(record))

        issued: IssuedSecret = await self._edit_keys(actor, customer_id, "api_key.create", change)
        return issued

    async def revoke_key(self, actor: Actor, customer_id: str, key_id: str) -> Mapping[str, object]:
        await self.require_manage(actor, customer_id)

        def change(keys: list[dict[str, Any]]) -> object:
            for key in keys:
                if key.get("id") == key_id:
                    key["revoked"] = True
                    return key_view(key)
            raise NotFound(f"no key {key_id!r}")

        view: Mapping[str, object] = await self._edit_keys(
            actor, customer_id, "api_key.revoke", change
        )
        return view

    async def rotate_key(self, actor: Actor, customer_id: str, key_id: str) -> IssuedSecret:
        """A new key replaces `key_id`, which is revoked in the same change."""
        await self.require_manage(actor, customer_id)

        def change(keys: list[dict[str, Any]]) -> object:
            old = next((k for k in keys if k.get("id") == key_id), None)
            if old is None:
                raise NotFound(f"no key {key_id!r}")
            if old.get("revoked"):
                raise Conflict(f"key {key_id!r} is already revoked")
            old["revoked"] = True
            secret, record = self._new_key(keys, None, old.get("expires_at"))
            return IssuedSecret(record["id"], secret, {**key_view(record), "replaces": key_id})

        issued: IssuedSecret = await self._edit_keys(actor, customer_id, "api_key.rotate", change)
        return issued

    # ---- alert thresholds (self-service) -----------------------------------------------
    async def set_thresholds(self, actor: Actor, customer_id: str, body: object) -> None:
        """`{"features": {feature: [percent, ...]}, "spend": [percent, ...], "features_at":
        {feature: [units, ...]}, "spend_at": ["25.00", ...]}` (any of them): the customer's own
        alert thresholds, percentages and absolute points, written as overrides (validated like
        the file's)."""
        customer = await self.require_manage(actor, customer_id)
        fields = object_body(body, ("features", "spend", "features_at", "spend_at"))
        per_feature: list[tuple[str, dict[str, Any]]] = []  # (override key, feature -> values)
        for field, key, what in (("features", "alert_thresholds", "percent"),
                                 ("features_at", "alert_at", "units")):  # fmt: skip
            given = fields.get(field) or {}
            if not isinstance(given, dict):
                raise InputError.one(field, f"expected an object of feature -> [{what}, ...]")
            for name in given:
                if name not in customer.entitlements.metered:
                    raise InputError.one(f"{field}.{name}", "not a metered feature of this plan")
            per_feature.append((key, given))
        if "spend" in fields and customer.entitlements.spend_cap is None:
            raise InputError.one("spend", "this customer's plan has no spend cap")

        def rename(field: str) -> str:
            parts = field.split(".")
            if field.startswith("overrides.spend_cap."):
                return "spend_at" if parts[2].startswith("alert_at") else "spend"
            if field.startswith("overrides.") and len(parts) > 2:
                at = parts[2].startswith("alert_at")
                return ("features_at." if at else "features.") + parts[1]
            return field

        def edit(doc: dict[str, Any]) -> tuple[dict[str, Any], None]:
            overrides = dict(doc.get("overrides") or {})
            for key, given in per_feature:
                for name, values in given.items():
                    entry = overrides.get(name)
                    entry = dict(entry) if isinstance(entry, dict) else {}
                    entry[key] = values
                    overrides[name] = entry
            for field, key in (("spend", "alert_thresholds"), ("spend_at", "alert_at")):
                if field in fields:
                    cap = overrides.get("spend_cap")
                    cap = dict(cap) if isinstance(cap, dict) else {}
                    cap[key] = fields[field]
                    overrides["spend_cap"] = cap
            doc["overrides"] = overrides
            return doc, None

        await self.edit_customer(
            actor,
            customer_id,
            "alert_thresholds.set",
            edit,
            rename=rename,
            audited=lambda doc: doc.get("overrides"),
        )


def key_view(record: Mapping[str, Any]) -> dict[str, object]:
    created = record.get("created_at")
    if isinstance(created, datetime):
        created = created.isoformat()
    expires = record.get("expires_at")
    if isinstance(expires, datetime):
        expires = expires.isoformat()
    return {
        "id": record.get("id"),
        "label": record.get("label", ""),
        "revoked": bool(record.get("revoked", False)),
        "created_at": created,
        "expires_at": expires,
    }
