"""Which features a request needs and consumes: the route table, or Envoy context_extensions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from gatekeeper.edge.request import EdgeRequest
from gatekeeper.engine import MeterRequest
from gatekeeper.model import (
    MAX_COUNT,
    NO_STRINGS,
    FeatureType,
    Policy,
    Route,
    RouteMeter,
    frozen_map,
)

__all__ = ["BadRequest", "RouteTable", "Usage", "resolve_usage"]


class BadRequest(ValueError):
    """The client sent something gatekeeper cannot meter (e.g. a malformed cost header)."""


class Usage(NamedTuple):
    """What one request needs and consumes (an immutable NamedTuple: one per request)."""

    requires: tuple[str, ...] = ()
    meters: tuple[MeterRequest, ...] = ()
    settle_headers: Mapping[str, str] = NO_STRINGS  # feature -> header


@dataclass(frozen=True, slots=True)
class _Compiled:
    route: Route
    regex: re.Pattern[str] | None


class RouteTable:
    """The policy's routes, first match wins (method, then path prefix or full regex match)."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self._routes = [
            _Compiled(r, re.compile(r.match.path_regex) if r.match.path_regex else None)
            for r in routes
        ]

    def match(self, method: str, path: str) -> Route | None:
        method = method.upper()
        for c in self._routes:
            m = c.route.match
            if m.method is not None and m.method != method:
                continue
            if m.path_prefix is not None and not path.startswith(m.path_prefix):
                continue
            if c.regex is not None and not c.regex.fullmatch(path):
                continue
            return c.route
        return None


def _header_int(request: EdgeRequest, header: str, default: int | None) -> int:
    raw = request.headers.get(header)
    if raw is None or raw.strip() == "":
        if default is None:
            raise BadRequest(f"header {header} is required: the number of units this request uses")
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadRequest(
            f"header {header} must be a non-negative integer, got {raw[:32]!r}"
        ) from None
    if value < 0 or value > MAX_COUNT:
        raise BadRequest(
            f"header {header} must be an integer from 0 to {MAX_COUNT}, got {raw.strip()[:32]}"
        )
    return value


def _context_cost(ctx: Mapping[str, str]) -> int | None:
    """`cost` of Envoy's context_extensions: a count gatekeeper holds exactly, else none."""
    raw = ctx.get("cost", "")
    if not raw.isdigit() or len(raw) > 16 or int(raw) > MAX_COUNT:
        return None
    return int(raw)


def _meter(request: EdgeRequest, m: RouteMeter) -> tuple[MeterRequest, str | None]:
    if m.reserve is not None:
        return MeterRequest(m.feature, m.reserve, reserve=True), m.settle_header
    if m.cost_header is not None:
        return MeterRequest(m.feature, _header_int(request, m.cost_header, m.default_cost)), None
    return MeterRequest(m.feature, m.cost if m.cost is not None else 1), None


def _from_context(policy: Policy, request: EdgeRequest) -> Usage:
    """Envoy per-route context_extensions: feature, cost | cost_header, settle_header, requires."""
    ctx = request.context
    requires = tuple(f.strip() for f in ctx.get("requires", "").split(",") if f.strip())
    name = ctx.get("feature", "").strip()
    feature = policy.features.get(name)
    if not name:
        return Usage(requires=requires)
    if feature is None or feature.type is not FeatureType.METERED:
        return Usage(requires=(*requires, name))
    cost = _context_cost(ctx)
    if "cost_header" in ctx:
        quantity = _header_int(request, ctx["cost_header"], cost)
    else:
        quantity = 1 if cost is None else cost
    settle = ctx.get("settle_header", "").strip().lower()
    meter = MeterRequest(name, quantity, reserve=bool(settle))
    return Usage(
        requires=requires,
        meters=(meter,),
        settle_headers=frozen_map({name: settle} if settle else {}),
    )


def resolve_usage(policy: Policy, table: RouteTable, request: EdgeRequest) -> Usage:
    """Usage of `request`: context_extensions when Envoy sent a feature, else the route table.

    An unmatched request needs only a valid identity. Raises BadRequest on a malformed cost.
    """
    if request.context.get("feature") or request.context.get("requires"):
        return _from_context(policy, request)
    route = table.match(request.method, request.path_only)
    if route is None:
        return Usage()
    meters: list[MeterRequest] = []
    settle: dict[str, str] = {}
    for rm in route.meters:
        meter, header = _meter(request, rm)
        meters.append(meter)
        if header:
            settle[rm.feature] = header
    return Usage(route.requires, tuple(meters), frozen_map(settle) if settle else NO_STRINGS)
