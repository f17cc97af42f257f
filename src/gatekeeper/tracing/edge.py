"""ext_authz decisions in spans: `TracedAuthorizer.check` is `Authorizer.check` in a SERVER
span. The composition root hands it to the transports only when tracing is on; off, they call
`Authorizer.check` itself and nothing here runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from gatekeeper.edge import Answer, Authorizer, EdgeRequest
from gatekeeper.tracing.tracer import Tracing
from gatekeeper.tracing.w3c import from_headers, from_pairs

__all__ = ["TracedAuthorizer"]


class TracedAuthorizer:
    def __init__(self, authorizer: Authorizer, tracing: Tracing, *, name: str) -> None:
        """`name`: the span name (e.g. `ext_authz http`, `ext_authz grpc`)."""
        self._authorizer = authorizer
        self._tracing = tracing
        self._name = name

    async def check(
        self, request: EdgeRequest, metadata: Iterable[tuple[str, str | bytes]] = ()
    ) -> Answer:
        """Authorizer.check under a span whose parent is the W3C context in gRPC `metadata`
        (Envoy's ext_authz call, gRPC mode), else in the request headers Envoy sent."""
        parent = from_pairs(metadata) or from_headers(request.headers)
        with self._tracing.decision(self._name, parent) as scope:
            answer = await self._authorizer.check(request)
            meta = answer.metadata
            scope.annotate(
                outcome=answer.outcome,
                customer=meta.get("customer"),
                features=self._authorizer.features(request) if scope.span.is_recording() else (),
                decision_id=meta.get("decision_id"),
                plan=meta.get("plan"),
                error=answer.outcome == "store_unavailable",
            )
        return answer
