"""The edge: from an HTTP request (whatever transport) to an Answer, through the engine."""

from gatekeeper.edge.answers import Answer, rate_limit_headers
from gatekeeper.edge.authorizer import Authorizer
from gatekeeper.edge.backlog import OfflineBacklog
from gatekeeper.edge.identity import Identity, IdentityFailure, identify, key_hash
from gatekeeper.edge.request import EdgeRequest
from gatekeeper.edge.routing import BadRequest, RouteTable, Usage, resolve_usage

__all__ = [
    "Answer",
    "Authorizer",
    "BadRequest",
    "EdgeRequest",
    "Identity",
    "IdentityFailure",
    "OfflineBacklog",
    "RouteTable",
    "Usage",
    "identify",
    "key_hash",
    "rate_limit_headers",
    "resolve_usage",
]
