"""The policy file's top level: version, currency, then each section in dependency order.

Features come first (everything refers to them), then prices, plans, customers (which refer to
plans) and routes. Nothing here raises: problems are recorded in the `Issues` collector.
"""

from __future__ import annotations

import re

from gatekeeper.config.customers import parse_customers
from gatekeeper.config.errors import Issues
from gatekeeper.config.features import parse_features, parse_prices
from gatekeeper.config.fields import Section
from gatekeeper.config.plans import parse_plans
from gatekeeper.config.routes import parse_routes
from gatekeeper.config.yamlsrc import YMap
from gatekeeper.model import Policy, frozen_map

__all__ = ["TOP_LEVEL_KEYS", "parse_policy"]

TOP_LEVEL_KEYS = (
    "version",
    "currency",
    "features",
    "prices",
    "plans",
    "customers",
    "routes",
    "settings",
)
_CURRENCY = re.compile(r"[A-Z]{3}")


def parse_policy(root: YMap, issues: Issues) -> Policy:
    """The policy; meaningful only when `issues` stayed empty (else a best-effort partial one)."""
    sec = Section(root, "", issues, allowed=TOP_LEVEL_KEYS, required=("version", "currency"))
    version = sec.integer("version", 1)
    if sec.ok("version") and version != 1:
        sec.error("version", f"unsupported version {version}; this gatekeeper reads version 1")
    currency = sec.text(
        "currency", "USD", pattern=_CURRENCY, what="an ISO 4217 code of three upper-case letters"
    )
    catalog = parse_features(sec.get("features"), issues)
    prices = parse_prices(sec.get("prices"), catalog, currency, issues)
    plans = parse_plans(sec.get("plans"), catalog, issues)
    customers = parse_customers(sec.get("customers"), plans, catalog, issues)
    routes = parse_routes(sec.get("routes"), catalog, issues)
    return Policy(
        version=version,
        currency=currency,
        features=frozen_map(catalog.features),
        prices=frozen_map(prices),
        plans=frozen_map(plans),
        customers=frozen_map(customers),
        routes=routes,
    )
