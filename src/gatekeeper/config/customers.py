"""The `customers:` section: plan + overrides, grants, the customer's own spend cap, API keys.

Nothing here raises: problems are recorded in the `Issues` collector.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from gatekeeper.config.errors import ConfigError, ConfigIssue, Issues, did_you_mean
from gatekeeper.config.features import RESERVED_FEATURE_NAMES, Catalog
from gatekeeper.config.fields import (
    Section,
    describe,
    expect_map,
    expect_str,
    section_map,
    section_seq,
)
from gatekeeper.config.plans import EntitlementBuilder, parse_rate_limits, parse_spend_cap
from gatekeeper.config.yamlsrc import Node, Scalar, YMap, from_plain, item_path, key_path
from gatekeeper.model import (
    NO_STRINGS,
    ApiKey,
    CapAction,
    Customer,
    CustomerSpendCap,
    Feature,
    FeatureType,
    Grant,
    Plan,
    frozen_map,
)
from gatekeeper.money import format_nano

__all__ = ["CUSTOMER_ID", "parse_customer", "parse_customers"]

_CUSTOMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CUSTOMER_ID = _CUSTOMER_ID
_GRANT_ID = re.compile(r"[A-Za-z0-9._-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CUSTOMER_KEYS = (
    "plan",
    "billing_day",
    "overrides",
    "grants",
    "spend_cap",
    "api_keys",
    "description",
    "metadata",
)
_METADATA_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
MAX_METADATA = 50  # entries per customer
MAX_METADATA_VALUE = 512  # characters


@dataclass(slots=True)
class _KeyHashes:
    """Where each API key hash was first seen, across all customers."""

    seen: dict[str, tuple[str, int]] = field(default_factory=dict)


def parse_customers(
    node: Node | None, plans: dict[str, Plan], catalog: Catalog, issues: Issues
) -> dict[str, Customer]:
    customers: dict[str, Customer] = {}
    hashes = _KeyHashes()
    for entry in section_map(node, "customers", issues) or ():
        path = key_path("customers", entry.key)
        if not _CUSTOMER_ID.fullmatch(entry.key):
            issues.add(
                path,
                entry.key_line,
                "customer ids match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (at most 128)",
            )
        mapping = expect_map(entry.value, path, issues)
        if mapping is not None:
            customer = _customer(entry.key, mapping, path, plans, catalog, hashes, issues)
            if customer is not None:
                customers[entry.key] = customer
    return customers


def parse_customer(
    cid: str,
    doc: Mapping[str, object],
    *,
    plans: Mapping[str, Plan],
    features: Mapping[str, Feature],
    source: str = "<directory>",
    check_cap_ceiling: bool = True,
) -> Customer:
    """One customer document (the policy file's shape for `customers.<cid>`, as JSON) read
    against the catalog: the work of one customer, never of the whole policy.

    Raises ConfigError with every issue, its paths under `customers.<cid>`. A key hash used by
    another customer is not detected here (the directory's key index refuses it).
    `check_cap_ceiling` False reads an own spend cap above the plan's ceiling (or `alert` under a
    plan that blocks) without an issue: a stored cap kept across a plan change is enforced at
    the plan's ceiling (`Customer.effective_spend_cap`), never a reason to refuse the customer.
    """
    issues = Issues(source)
    path = key_path("customers", cid)
    if not _CUSTOMER_ID.fullmatch(cid):
        issues.add(path, None, "customer ids match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (at most 128)")
    node: Node | None = from_plain(doc)
    mapping = expect_map(node, path, issues) if node is not None else None
    if node is None:
        issues.add(path, None, "expected a customer document with at least a plan")
    catalog = Catalog(features=dict(features), declared=frozenset(features))
    customer = None
    if mapping is not None:
        customer = _customer(
            cid,
            mapping,
            path,
            dict(plans),
            catalog,
            _KeyHashes(),
            issues,
            check_cap_ceiling=check_cap_ceiling,
        )
    issues.raise_if_any()
    if customer is None:  # pragma: no cover - every path to None records an issue
        raise ConfigError([ConfigIssue(path, None, "not a valid customer", source)], source=source)
    return customer


def _customer(
    cid: str,
    mapping: YMap,
    path: str,
    plans: dict[str, Plan],
    catalog: Catalog,
    hashes: _KeyHashes,
    issues: Issues,
    *,
    check_cap_ceiling: bool = True,
) -> Customer | None:
    sec = Section(mapping, path, issues, allowed=_CUSTOMER_KEYS, required=("plan",))
    sec.text("description", "")
    plan_name = sec.text("plan", "")
    plan = plans.get(plan_name)
    if plan is None and sec.ok("plan"):
        sec.error("plan", f"unknown plan '{plan_name}'{did_you_mean(plan_name, plans)}")
    billing_day = sec.integer("billing_day", None, lo=1, hi=31)
    entitlements = None if plan is None else _overrides(sec, plan, catalog)
    grants = _grants(sec, catalog)
    api_keys = _api_keys(sec, hashes)
    cap = None if entitlements is None else _own_cap(sec, entitlements, check_cap_ceiling)
    metadata = _metadata(sec)
    if entitlements is None:
        return None
    return Customer(
        id=cid,
        plan=plan_name,
        entitlements=entitlements,
        billing_day=billing_day,
        grants=grants,
        spend_cap=cap,
        api_keys=api_keys,
        metadata=metadata,
    )


def _metadata(sec: Section) -> Mapping[str, str]:
    """Free-form labels of the customer (CRM id, region, ...): text keys to text values."""
    base = sec.path_of("metadata")
    found: dict[str, str] = {}
    node = section_map(sec.get("metadata"), base, sec.issues)
    entries = list(node or ())
    if len(entries) > MAX_METADATA:
        sec.issues.add(base, node.line if node else None, f"at most {MAX_METADATA} entries")
        return frozen_map()
    for entry in entries:
        path = key_path(base, entry.key)
        if not _METADATA_KEY.fullmatch(entry.key):
            sec.issues.add(
                path, entry.key_line, "keys are letters, digits, '.', '_', ':', '/', '-' (≤ 64)"
            )
            continue
        value = expect_str(entry.value, path, sec.issues, what="a text value")
        if value is not None and len(value) > MAX_METADATA_VALUE:
            sec.issues.add(path, entry.key_line, f"at most {MAX_METADATA_VALUE} characters")
        elif value is not None:
            found[entry.key] = value
    return frozen_map(found) if found else NO_STRINGS  # shared: one object less per customer


def _overrides(sec: Section, plan: Plan, catalog: Catalog) -> Plan:
    if sec.get("overrides") is None:
        # the plan itself, shared by its customers: a copy per customer (~0.5 kB each) was
        # most of what a directory cache of 100,000 customers held beyond their documents
        return plan
    builder = EntitlementBuilder.of(plan)
    rate_limits, cap = plan.rate_limits, plan.spend_cap
    base = sec.path_of("overrides")
    for entry in section_map(sec.get("overrides"), base, sec.issues) or ():
        path = key_path(base, entry.key)
        if entry.key == "rate_limits":
            rate_limits = parse_rate_limits(entry.value, path, catalog, sec.issues)
        elif entry.key == "spend_cap":
            cap_map = expect_map(entry.value, path, sec.issues)
            if cap_map is not None:
                cap = parse_spend_cap(cap_map, path, plan.spend_cap, sec.issues) or cap
        elif entry.key not in catalog.declared:
            hint = did_you_mean(entry.key, catalog.declared | RESERVED_FEATURE_NAMES)
            sec.issues.add(path, entry.key_line, f"unknown feature '{entry.key}'{hint}")
        else:
            builder.apply(entry, path, catalog, sec.issues)
    return builder.build(plan.name, rate_limits, cap)


def _grants(sec: Section, catalog: Catalog) -> tuple[Grant, ...]:
    grants: list[Grant] = []
    where: dict[str, str] = {}
    seq = section_seq(sec.get("grants"), sec.path_of("grants"), sec.issues)
    for index, item in enumerate(seq.items if seq else ()):
        path = item_path(sec.path_of("grants"), index)
        mapping = expect_map(item, path, sec.issues, what="a grant {feature, amount, expires_at}")
        if mapping is None:
            continue
        g = Section(
            mapping,
            path,
            sec.issues,
            allowed=("id", "feature", "amount", "expires_at"),
            required=("feature", "amount"),
        )
        feature = g.text("feature", "")
        if g.ok("feature"):
            found = catalog.lookup(
                feature,
                g.path_of("feature"),
                g.line_of("feature"),
                sec.issues,
                kinds=(FeatureType.METERED,),
                wrong_kind="grant of {type} feature '{name}'; only metered features take grants",
            )
            if found is None:
                g.bad.add("feature")
        amount = g.integer("amount", 0, lo=1)
        expires_at = _expires_at(g)
        stamp = expires_at.isoformat() if expires_at else ""
        derived = hashlib.sha256(f"{feature}|{amount}|{stamp}".encode()).hexdigest()[:12]
        gid = g.text(
            "id", derived, pattern=_GRANT_ID, what="an id of letters, digits, '.', '_', '-'"
        )
        if gid in where and not g.bad:
            g.error(
                "id" if g.has("id") else "amount", f"duplicate grant id '{gid}' (also {where[gid]})"
            )
        elif not g.bad:
            where[gid] = path
        if not g.bad:
            grants.append(Grant(id=gid, feature=feature, amount=amount, expires_at=expires_at))
    return tuple(grants)


def _expires_at(g: Section) -> datetime | None:
    return _instant(g, "expires_at")


def _instant(g: Section, key: str) -> datetime | None:
    node = g.get(key)
    if node is None or g.is_null(key):
        return None
    value = node.value if isinstance(node, Scalar) else None
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if moment is None:
        kind = "a date without a time" if isinstance(value, date) else describe(node)
        g.error(key, f"expected an ISO 8601 date-time with a timezone, got {kind}")
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        g.error(key, f"{key} needs a timezone, e.g. 2027-01-31T00:00:00Z")
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00:00-05:00 is past the last datetime in UTC
        g.error(key, f"{key} is out of range in UTC")
        return None


def _api_keys(sec: Section, hashes: _KeyHashes) -> tuple[ApiKey, ...]:
    keys: list[ApiKey] = []
    ids: dict[str, str] = {}
    seq = section_seq(sec.get("api_keys"), sec.path_of("api_keys"), sec.issues)
    for index, item in enumerate(seq.items if seq else ()):
        path = item_path(sec.path_of("api_keys"), index)
        mapping = expect_map(item, path, sec.issues, what="an API key {id, sha256}")
        if mapping is None:
            continue
        k = Section(
            mapping,
            path,
            sec.issues,
            allowed=("id", "sha256", "revoked", "label", "created_at", "expires_at"),
            required=("id", "sha256"),
        )
        kid = k.text(
            "id", "", pattern=_CUSTOMER_ID, what="a key id of letters, digits, '.', '_', '-'"
        )
        if k.ok("id") and kid in ids:
            k.error("id", f"duplicate key id '{kid}' (also {ids[kid]})")
        ids.setdefault(kid, path)
        digest = k.text("sha256", "")
        if k.ok("sha256") and not _SHA256.fullmatch(digest):
            # Never echo the value: it may be the key itself pasted by mistake.
            k.error(
                "sha256",
                f"expected 64 lower-case hex characters (the SHA-256 of the key), "
                f"got a {len(digest)}-character value",
            )
        elif k.ok("sha256"):
            first = hashes.seen.get(digest)
            if first is not None:
                k.error("sha256", f"key hash already used at {first[0]} (line {first[1]})")
            else:
                hashes.seen[digest] = (k.path_of("sha256"), k.line_of("sha256"))
        revoked = k.flag("revoked", False)
        label = k.text("label", "")
        created_at = _instant(k, "created_at")
        expires_at = _instant(k, "expires_at")
        if not k.bad:
            keys.append(
                ApiKey(
                    id=kid,
                    sha256=digest,
                    revoked=revoked,
                    label=label,
                    created_at=created_at,
                    expires_at=expires_at,
                )
            )
    return tuple(keys)


def _own_cap(sec: Section, plan: Plan, check_ceiling: bool = True) -> CustomerSpendCap | None:
    cap_map = section_map(sec.get("spend_cap"), sec.path_of("spend_cap"), sec.issues)
    if cap_map is None:
        return None
    c = Section(
        cap_map,
        sec.path_of("spend_cap"),
        sec.issues,
        allowed=("amount", "action"),
        required=("amount",),
    )
    amount = c.money("amount")
    action = c.choice("action", CapAction, None)
    if amount is None:
        if c.has("amount") and "amount" not in c.bad:
            c.error("amount", 'expected a decimal amount such as "250.00", got null')
        return None
    limit = plan.spend_cap if check_ceiling else None
    if limit is not None and action is CapAction.ALERT and limit.blocks:
        c.error(
            "action",
            f"plan '{plan.name}' blocks at its cap, so a customer's own cap blocks too "
            "(an own cap may only tighten the plan's): use action block or leave it out",
        )
    if limit is not None:
        ceiling = limit.max_customer_cap_nano
        label = "max_customer_cap"
        if ceiling is None:
            ceiling, label = limit.amount_nano, "spend_cap amount"
        if ceiling is not None and amount > ceiling:
            c.error(
                "amount",
                f"{format_nano(amount)} is above plan '{plan.name}' {label} {format_nano(ceiling)}",
            )
            return None
    return None if c.bad else CustomerSpendCap(amount_nano=amount, action=action)
