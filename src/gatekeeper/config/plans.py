"""The `plans:` section: entitlements, rate limits and spend caps.

The same readers apply customer overrides: each takes the plan's value as `base` and merges
the override over it field by field, then checks the merged result with the plan's rules.
Nothing here raises: problems are recorded in the `Issues` collector.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from gatekeeper.config.errors import Issues
from gatekeeper.config.features import Catalog
from gatekeeper.config.fields import (
    Section,
    describe,
    expect_map,
    scalar_text,
    section_map,
    section_seq,
)
from gatekeeper.config.yamlsrc import Entry, Node, Scalar, YMap, item_path, key_path
from gatekeeper.model import (
    Anchor,
    CapAction,
    Enforcement,
    FeatureType,
    MeteredEntitlement,
    Period,
    Plan,
    RateAlgorithm,
    RateLimit,
    RateUnit,
    SpendCap,
    frozen_map,
)
from gatekeeper.money import format_nano

__all__ = ["EntitlementBuilder", "parse_plans", "parse_rate_limits", "parse_spend_cap"]

_PLAN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_METERED_KEYS = (
    "limit",
    "period",
    "anchor",
    "enforcement",
    "overage_allowance",
    "grace_percent",
    "alert_thresholds",
    "alert_at",
)


@dataclass(slots=True)
class EntitlementBuilder:
    """A plan's entitlements being assembled (from the plan, then a customer's overrides)."""

    access: set[str] = field(default_factory=set)
    config_values: dict[str, str] = field(default_factory=dict)
    metered: dict[str, MeteredEntitlement] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: Plan) -> EntitlementBuilder:
        return cls(set(plan.access), dict(plan.config_values), dict(plan.metered))

    def apply(self, entry: Entry, path: str, catalog: Catalog, issues: Issues) -> None:
        """Set (or merge over) the entitlement to feature `entry.key`."""
        feature = catalog.lookup(entry.key, path, entry.key_line, issues)
        if feature is None:
            return
        node, name = entry.value, entry.key
        if feature.type is FeatureType.BOOLEAN:
            if not (isinstance(node, Scalar) and isinstance(node.value, bool)):
                issues.add(path, node.line, f"expected true or false, got {describe(node)}")
            elif node.value:
                self.access.add(name)
            else:
                self.access.discard(name)
        elif feature.type is FeatureType.CONFIG:
            text = scalar_text(node)
            if text is None:
                issues.add(
                    path, node.line, f"expected a value for the {name} header, got {describe(node)}"
                )
            else:
                self.config_values[name] = text
        elif isinstance(node, Scalar) and isinstance(node.value, bool):
            base = self.metered.pop(name, None)
            if node.value:  # `true`: unlimited, still counted and priced
                keep = base or MeteredEntitlement(name, limit=None)
                self.metered[name] = replace(keep, limit=None, overage_allowance=None)
        else:
            mapping = expect_map(node, path, issues, what="a mapping {limit, period, ...} or true")
            if mapping is not None:
                metered = _metered(name, mapping, path, self.metered.get(name), issues)
                if metered is not None:
                    self.metered[name] = metered

    def build(
        self, name: str, rate_limits: tuple[RateLimit, ...], spend_cap: SpendCap | None
    ) -> Plan:
        return Plan(
            name=name,
            access=frozenset(self.access),
            config_values=frozen_map(self.config_values),
            metered=frozen_map(self.metered),
            rate_limits=rate_limits,
            spend_cap=spend_cap,
        )


def parse_plans(node: Node | None, catalog: Catalog, issues: Issues) -> dict[str, Plan]:
    plans: dict[str, Plan] = {}
    for entry in section_map(node, "plans", issues) or ():
        path = key_path("plans", entry.key)
        if not _PLAN_NAME.fullmatch(entry.key):
            issues.add(
                path, entry.key_line, "plan names match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (at most 64)"
            )
        mapping = expect_map(entry.value, path, issues)
        if mapping is None:
            plans[entry.key] = Plan(entry.key)  # known, so customers naming it get no extra error
            continue
        sec = Section(
            mapping,
            path,
            issues,
            allowed=("entitlements", "rate_limits", "spend_cap", "description"),
        )
        sec.text("description", "")
        builder = EntitlementBuilder()
        ent_path = sec.path_of("entitlements")
        for ent in section_map(sec.get("entitlements"), ent_path, issues) or ():
            builder.apply(ent, key_path(ent_path, ent.key), catalog, issues)
        rate_limits = parse_rate_limits(
            sec.get("rate_limits"), sec.path_of("rate_limits"), catalog, issues
        )
        cap_node = section_map(sec.get("spend_cap"), sec.path_of("spend_cap"), issues)
        cap = (
            None
            if cap_node is None
            else parse_spend_cap(cap_node, sec.path_of("spend_cap"), None, issues)
        )
        plans[entry.key] = builder.build(entry.key, rate_limits, cap)
    return plans


def _metered(
    name: str, mapping: YMap, path: str, base: MeteredEntitlement | None, issues: Issues
) -> MeteredEntitlement | None:
    sec = Section(mapping, path, issues, allowed=_METERED_KEYS, required=() if base else ("limit",))
    was = base or MeteredEntitlement(name, limit=None)
    limit = sec.integer_or_null("limit", was.limit, lo=0)
    period = sec.choice("period", Period, was.period)
    anchor = sec.choice("anchor", Anchor, was.anchor)
    enforcement = sec.choice("enforcement", Enforcement, was.enforcement)
    inherited = was.overage_allowance if enforcement is Enforcement.SOFT else None
    allowance = sec.integer_or_null("overage_allowance", inherited, lo=0)
    thresholds = sec.thresholds("alert_thresholds", was.alert_thresholds)
    alert_at = sec.alert_at("alert_at", was.alert_at, money=False)
    inherited_grace = was.grace_percent if enforcement is Enforcement.HARD else 0
    grace = sec.integer("grace_percent", inherited_grace, lo=0, hi=1000)
    hard = enforcement is Enforcement.HARD and "enforcement" not in sec.bad
    if sec.ok("grace_percent") and sec.has("grace_percent") and grace and not hard:
        sec.error("grace_percent", "grace_percent applies only with enforcement: hard")
    if sec.ok("overage_allowance") and allowance is not None and hard:
        sec.error("overage_allowance", "overage_allowance applies only with enforcement: soft")
    if (
        anchor is Anchor.BILLING_DAY
        and period is not Period.MONTH
        and not sec.bad & {"anchor", "period"}
    ):
        key = "anchor" if sec.has("anchor") else "period"
        origin = "" if sec.has("anchor") else " (anchor billing_day comes from the plan)"
        sec.error(
            key, f"anchor billing_day requires period month, got period {period.value}{origin}"
        )
    if sec.bad:
        return None
    return MeteredEntitlement(
        feature=name,
        limit=limit,
        period=period,
        anchor=anchor,
        enforcement=enforcement,
        overage_allowance=allowance,
        alert_thresholds=thresholds,
        alert_at=alert_at,
        grace_percent=grace,
    )


def parse_rate_limits(
    node: Node | None, path: str, catalog: Catalog, issues: Issues
) -> tuple[RateLimit, ...]:
    limits: list[RateLimit] = []
    seq = section_seq(node, path, issues)
    for index, item in enumerate(seq.items if seq else ()):
        item_at = item_path(path, index)
        mapping = expect_map(item, item_at, issues, what="a rate limit {feature, limit, per}")
        if mapping is None:
            continue
        sec = Section(
            mapping,
            item_at,
            issues,
            allowed=("feature", "limit", "per", "algorithm"),
            required=("feature", "limit", "per"),
        )
        name = sec.text("feature", "")
        feature = None
        if sec.ok("feature"):
            feature = catalog.lookup(
                name,
                sec.path_of("feature"),
                sec.line_of("feature"),
                issues,
                kinds=(FeatureType.BOOLEAN, FeatureType.METERED),
                wrong_kind="rate limit on {type} feature '{name}'; "
                "only boolean and metered features can be rate limited",
            )
        limit = sec.integer("limit", 1, lo=1)
        per = sec.choice("per", RateUnit, RateUnit.SECOND)
        algorithm = sec.choice("algorithm", RateAlgorithm, RateAlgorithm.GCRA)
        if feature is not None and not sec.bad:
            limits.append(RateLimit(feature=name, limit=limit, per=per, algorithm=algorithm))
    return tuple(limits)


def parse_spend_cap(
    mapping: YMap, path: str, base: SpendCap | None, issues: Issues
) -> SpendCap | None:
    """A plan's spend cap, or a customer override merged over the plan's (`base`)."""
    sec = Section(
        mapping,
        path,
        issues,
        allowed=("amount", "max_customer_cap", "action", "alert_thresholds", "alert_at"),
    )
    was = base or SpendCap(amount_nano=None)
    amount = sec.money("amount") if sec.has("amount") else was.amount_nano
    ceiling = (
        sec.money("max_customer_cap") if sec.has("max_customer_cap") else was.max_customer_cap_nano
    )
    action = sec.choice("action", CapAction, was.action)
    thresholds = sec.thresholds("alert_thresholds", was.alert_thresholds)
    alert_at = sec.alert_at("alert_at", was.alert_at, money=True)
    money_ok = not sec.bad & {"amount", "max_customer_cap"}
    if amount is not None and ceiling is not None and ceiling < amount and money_ok:
        key = "max_customer_cap" if sec.has("max_customer_cap") else "amount"
        sec.error(
            key,
            f"max_customer_cap {format_nano(ceiling)} is below amount {format_nano(amount)}",
        )
    if sec.bad:
        return None
    return SpendCap(
        amount_nano=amount,
        max_customer_cap_nano=ceiling,
        action=action,
        alert_thresholds=thresholds,
        alert_at=alert_at,
    )
