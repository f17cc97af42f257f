"""The `routes:` section: which request needs which features and consumes how many units.

Nothing here raises: problems are recorded in the `Issues` collector.
"""

from __future__ import annotations

import re

from gatekeeper.config.errors import Issues, did_you_mean
from gatekeeper.config.features import Catalog
from gatekeeper.config.fields import (
    Section,
    expect_map,
    expect_seq,
    expect_str,
    section_seq,
)
from gatekeeper.config.yamlsrc import Node, YMap, item_path
from gatekeeper.model import FeatureType, Route, RouteMatch, RouteMeter

__all__ = ["HTTP_METHODS", "parse_routes"]

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_SOURCES = ("cost", "cost_header", "reserve")


def parse_routes(node: Node | None, catalog: Catalog, issues: Issues) -> tuple[Route, ...]:
    routes: list[Route] = []
    seq = section_seq(node, "routes", issues)
    for index, item in enumerate(seq.items if seq else ()):
        path = item_path("routes", index)
        mapping = expect_map(item, path, issues, what="a route {match, requires, meters}")
        if mapping is None:
            continue
        sec = Section(
            mapping, path, issues, allowed=("match", "requires", "meters"), required=("match",)
        )
        match_node = sec.get("match")
        match = None
        if match_node is not None:
            match_map = expect_map(match_node, sec.path_of("match"), issues)
            match = None if match_map is None else _match(match_map, sec.path_of("match"), issues)
        requires = _requires(sec, catalog)
        meters = _meters(sec, catalog)
        if match is not None and requires is not None and meters is not None:
            routes.append(Route(match=match, requires=requires, meters=meters))
    return tuple(routes)


def _match(mapping: YMap, path: str, issues: Issues) -> RouteMatch | None:
    sec = Section(mapping, path, issues, allowed=("method", "path_prefix", "path_regex"))
    method: str | None = None
    text = sec.text("method", "*")
    if sec.ok("method") and text != "*":
        method = text.upper()
        if method not in HTTP_METHODS:
            hint = did_you_mean(method, HTTP_METHODS)
            sec.error(
                "method", f"expected one of {', '.join(HTTP_METHODS)} or '*', got '{text}'{hint}"
            )
    prefix = sec.text("path_prefix", None)
    if prefix is not None and not prefix.startswith("/"):
        sec.error("path_prefix", f"path_prefix must start with '/', got '{prefix}'")
    regex = sec.text("path_regex", None)
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            sec.error("path_regex", f"invalid regular expression: {exc}")
    if not sec.has("path_prefix") and not sec.has("path_regex"):
        issues.add(
            path,
            mapping.line,
            "needs path_prefix or path_regex (path_prefix: / matches every path)",
        )
        return None
    if sec.bad:
        return None
    return RouteMatch(method=method, path_prefix=prefix, path_regex=regex)


def _requires(sec: Section, catalog: Catalog) -> tuple[str, ...] | None:
    node = sec.get("requires")
    if node is None:
        return ()
    seq = expect_seq(node, sec.path_of("requires"), sec.issues, what="a list of feature names")
    if seq is None:
        return None
    names: list[str] = []
    ok = True
    for index, item in enumerate(seq.items):
        path = item_path(sec.path_of("requires"), index)
        name = expect_str(item, path, sec.issues, what="a feature name")
        if name is None or catalog.lookup(name, path, item.line, sec.issues) is None:
            ok = False
        elif name not in names:
            names.append(name)
    return tuple(names) if ok else None


def _meters(sec: Section, catalog: Catalog) -> tuple[RouteMeter, ...] | None:
    node = sec.get("meters")
    if node is None:
        return ()
    seq = expect_seq(node, sec.path_of("meters"), sec.issues, what="a list of meters")
    if seq is None:
        return None
    meters: list[RouteMeter] = []
    seen: dict[str, str] = {}
    ok = True
    for index, item in enumerate(seq.items):
        path = item_path(sec.path_of("meters"), index)
        mapping = expect_map(
            item, path, sec.issues, what="a meter {feature, cost | cost_header | reserve}"
        )
        meter = None if mapping is None else _meter(mapping, path, catalog, sec.issues)
        if meter is None:
            ok = False
            continue
        if meter.feature in seen:
            sec.issues.add(
                path,
                item.line,
                f"feature '{meter.feature}' is already metered at {seen[meter.feature]}",
            )
            ok = False
        seen[meter.feature] = path
        meters.append(meter)
    return tuple(meters) if ok else None


def _meter(mapping: YMap, path: str, catalog: Catalog, issues: Issues) -> RouteMeter | None:
    sec = Section(
        mapping,
        path,
        issues,
        allowed=("feature", *_SOURCES, "default_cost", "settle_header"),
        required=("feature",),
    )
    name = sec.text("feature", "")
    if sec.ok("feature"):
        found = catalog.lookup(
            name,
            sec.path_of("feature"),
            sec.line_of("feature"),
            issues,
            kinds=(FeatureType.METERED,),
            wrong_kind="route meters {type} feature '{name}'; only metered features can be metered",
        )
        if found is None:
            sec.bad.add("feature")
    cost = sec.integer("cost", None, lo=0)
    cost_header = sec.header("cost_header", None)
    default_cost = sec.integer("default_cost", None, lo=0)
    reserve = sec.integer("reserve", None, lo=0)
    settle_header = sec.header("settle_header", None)
    given = [key for key in _SOURCES if sec.has(key)]
    if len(given) != 1:
        got = " and ".join(given) if given else "none"
        issues.add(
            path, mapping.line, f"needs exactly one of cost, cost_header or reserve, got {got}"
        )
        return None
    if sec.has("default_cost") and not sec.has("cost_header"):
        sec.error("default_cost", "default_cost applies only with cost_header")
    if sec.has("settle_header") and not sec.has("reserve"):
        sec.error("settle_header", "settle_header applies only with reserve")
    if sec.bad:
        return None
    return RouteMeter(
        feature=name,
        cost=cost,
        cost_header=cost_header,
        default_cost=default_cost,
        reserve=reserve,
        settle_header=settle_header,
    )
