"""The `features:` and `prices:` sections, and the feature catalog the other sections check against.

Nothing here raises: problems are recorded in the `Issues` collector.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from gatekeeper.config.errors import Issues, did_you_mean
from gatekeeper.config.fields import Section, expect_map, expect_seq, scalar_text, section_map
from gatekeeper.config.yamlsrc import Node, YMap, item_path, key_path
from gatekeeper.model import Feature, FeatureType, Price, PriceTier

__all__ = ["RESERVED_FEATURE_NAMES", "Catalog", "parse_features", "parse_prices"]

RESERVED_FEATURE_NAMES = frozenset({"rate_limits", "spend_cap"})  # customer override keys
_FEATURE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CUSTOMER_HEADER = "x-gatekeeper-customer"  # set by gatekeeper itself on every allowed request


@dataclass(frozen=True, slots=True)
class Catalog:
    """Valid features by name, plus every declared name (so a broken feature is not 'unknown')."""

    features: dict[str, Feature]
    declared: frozenset[str]

    def lookup(
        self,
        name: str,
        path: str,
        line: int,
        issues: Issues,
        *,
        kinds: Collection[FeatureType] = tuple(FeatureType),
        wrong_kind: str = "",
    ) -> Feature | None:
        """The feature, or None after recording why not (unknown, or not one of `kinds`).

        `wrong_kind` is a message template with `{type}` and `{name}`.
        """
        feature = self.features.get(name)
        if feature is None:
            if name not in self.declared:
                hint = did_you_mean(name, self.declared)
                issues.add(path, line, f"unknown feature '{name}'{hint}")
            return None
        if feature.type not in kinds:
            issues.add(path, line, wrong_kind.format(type=feature.type.value, name=name))
            return None
        return feature


def parse_features(node: Node | None, issues: Issues) -> Catalog:
    features: dict[str, Feature] = {}
    declared: set[str] = set()
    headers: dict[str, str] = {}
    section = section_map(node, "features", issues)
    for entry in section or ():
        name, path = entry.key, key_path("features", entry.key)
        declared.add(name)
        if not _FEATURE_NAME.fullmatch(name):
            issues.add(path, entry.key_line, "feature names match ^[a-z][a-z0-9_]*$ (at most 64)")
            continue
        if name in RESERVED_FEATURE_NAMES:
            issues.add(path, entry.key_line, f"'{name}' is reserved (a customer override key)")
            continue
        feature = _feature(name, entry.value, path, issues)
        if feature is None:
            continue
        if feature.header is not None:
            if feature.header == _CUSTOMER_HEADER:
                issues.add(path, entry.key_line, f"header '{feature.header}' is set by gatekeeper")
            elif feature.header in headers:
                other = headers[feature.header]
                issues.add(
                    path, entry.key_line, f"header '{feature.header}' is also used by '{other}'"
                )
            headers[feature.header] = name
        features[name] = feature
    return Catalog(features, frozenset(declared))


def _feature(name: str, node: Node, path: str, issues: Issues) -> Feature | None:
    mapping = expect_map(node, path, issues)
    if mapping is None:
        return None
    sec = Section(
        mapping, path, issues, allowed=("type", "unit", "header", "description"), required=("type",)
    )
    kind = sec.choice("type", FeatureType, None)
    description = sec.text("description", "")
    unit = sec.text("unit", None)
    header = sec.header("header", None)
    if kind is None:
        return None
    if sec.has("unit") and kind is not FeatureType.METERED:
        sec.error("unit", f"'unit' applies only to metered features, not {kind.value}")
    if sec.has("header") and kind is not FeatureType.CONFIG:
        sec.error("header", f"'header' applies only to config features, not {kind.value}")
    if kind is FeatureType.METERED:
        return Feature(name, kind, unit=unit or "unit", description=description)
    if kind is FeatureType.CONFIG:
        header = header or "x-gatekeeper-" + name.replace("_", "-")
        return Feature(name, kind, description=description, header=header)
    return Feature(name, kind, description=description)


def parse_prices(
    node: Node | None, catalog: Catalog, currency: str, issues: Issues
) -> dict[str, Price]:
    prices: dict[str, Price] = {}
    for entry in section_map(node, "prices", issues) or ():
        path = key_path("prices", entry.key)
        feature = catalog.lookup(
            entry.key,
            path,
            entry.key_line,
            issues,
            kinds=(FeatureType.METERED,),
            wrong_kind="price for {type} feature '{name}'; only metered features have prices",
        )
        mapping = expect_map(entry.value, path, issues)
        if mapping is None:
            continue
        price = _price(entry.key, mapping, path, currency, issues)
        if feature is not None and price is not None:
            prices[entry.key] = price
    return prices


def _price(name: str, mapping: YMap, path: str, currency: str, issues: Issues) -> Price | None:
    sec = Section(mapping, path, issues, allowed=("unit_price", "tiers", "per", "currency"))
    per = sec.integer("per", 1, lo=1)
    own_currency = sec.text("currency", currency)
    if own_currency != currency:
        sec.error(
            "currency",
            f"price currency '{own_currency}' differs from the policy currency '{currency}'",
        )
    if sec.has("unit_price") == sec.has("tiers"):
        which = "both" if sec.has("unit_price") else "neither"
        issues.add(path, mapping.line, f"needs exactly one of unit_price or tiers, got {which}")
        return None
    if sec.has("unit_price"):
        tier = _tier(sec, "unit_price", None, per)
        tiers: tuple[PriceTier, ...] = () if tier is None else (tier,)
    else:
        tiers = _tiers(sec, per)
    if not tiers or "per" in sec.bad:
        return None
    return Price(name, currency, per, tiers)


def _tier(sec: Section, key: str, up_to: int | None, per: int) -> PriceTier | None:
    nano = sec.money(key)
    node = sec.get(key)
    text = scalar_text(node) if node is not None else None
    if nano is None or text is None:
        if key not in sec.bad:
            sec.error(key, 'expected a decimal amount such as "0.002", got null')
        return None
    if nano % per:
        sec.error(
            key, f'{key} "{text}" per {per} units is not an exact number of nano-units per unit'
        )
        return None
    return PriceTier(up_to=up_to, unit_price_nano=nano // per, unit_price=text)


def _tiers(sec: Section, per: int) -> tuple[PriceTier, ...]:
    node = sec.get("tiers")
    assert node is not None
    seq = expect_seq(node, sec.path_of("tiers"), sec.issues, what="a list of tiers")
    if seq is None:
        return ()
    if not seq.items:
        sec.error("tiers", "needs at least one tier")
        return ()
    tiers: list[PriceTier] = []
    previous = 0
    ok = True
    for index, item in enumerate(seq.items):
        path = item_path(sec.path_of("tiers"), index)
        mapping = expect_map(item, path, sec.issues, what="a tier {up_to, unit_price}")
        if mapping is None:
            ok = False
            continue
        tier_sec = Section(
            mapping,
            path,
            sec.issues,
            allowed=("up_to", "unit_price"),
            required=("up_to", "unit_price"),
        )
        up_to = tier_sec.integer_or_null("up_to", 0, lo=1)
        last = index == len(seq.items) - 1
        if up_to is None and not last:
            tier_sec.error("up_to", "only the last tier may be unbounded (up_to: null)")
        elif up_to is not None and last and tier_sec.ok("up_to"):
            tier_sec.error("up_to", f"the last tier must have up_to: null (unbounded), got {up_to}")
        elif up_to is not None and tier_sec.ok("up_to") and up_to <= previous:
            tier_sec.error(
                "up_to", f"up_to must be strictly ascending: {up_to} is not above {previous}"
            )
        if up_to is not None and tier_sec.ok("up_to"):
            previous = up_to
        tier = _tier(tier_sec, "unit_price", up_to, per) if tier_sec.has("unit_price") else None
        ok = ok and tier is not None and not tier_sec.bad
        if tier is not None:
            tiers.append(tier)
    return tuple(tiers) if ok else ()
