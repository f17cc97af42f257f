"""envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit onto `RateLimitService`.

Protobuf stays here: RateLimitRequest → (domain, entries, hits, overrides) → RateLimitResult →
RateLimitResponse. Errors map once: a malformed request → INVALID_ARGUMENT; the counter store
down → UNAVAILABLE, so Envoy's rate limit filter applies its own `failure_mode_deny`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from redis.exceptions import RedisError

from gatekeeper.ratelimit.model import Unit
from gatekeeper.ratelimit.service import (
    Code,
    DescriptorStatus,
    LimitOverride,
    RateLimitRequestError,
    RateLimitResult,
    RateLimitService,
)
from gatekeeper.tracing.w3c import from_pairs

if TYPE_CHECKING:
    from gatekeeper.tracing import Tracing

__all__ = ["RateLimitServicer", "add_to_server", "to_response"]

log = logging.getLogger(__name__)

_RLS_METHOD = "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
_PB_UNIT = rls_pb2.RateLimitResponse.RateLimit.Unit
_CODE = {
    Code.OK: rls_pb2.RateLimitResponse.OK,
    Code.OVER_LIMIT: rls_pb2.RateLimitResponse.OVER_LIMIT,
}


def _unit_to_pb(unit: Unit) -> int:
    return int(_PB_UNIT.Value(unit.name))


def _unit_from_pb(value: int) -> Unit:
    name = _PB_UNIT.Name(value) if value in _PB_UNIT.values() else "UNKNOWN"
    if name not in Unit.__members__:
        raise RateLimitRequestError(f"descriptor limit override has an unknown unit ({value})")
    return Unit[name]


def _override(descriptor: ratelimit_pb2.RateLimitDescriptor) -> LimitOverride | None:
    if not descriptor.HasField("limit"):
        return None
    limit = descriptor.limit
    return LimitOverride(limit.requests_per_unit, _unit_from_pb(limit.unit))


def _status(status: DescriptorStatus) -> rls_pb2.RateLimitResponse.DescriptorStatus:
    message = rls_pb2.RateLimitResponse.DescriptorStatus(
        code=_CODE[status.code], limit_remaining=status.limit_remaining
    )
    if status.current_limit is not None:
        current = status.current_limit
        message.current_limit.requests_per_unit = current.requests_per_unit
        message.current_limit.unit = _unit_to_pb(current.unit)
        message.current_limit.name = current.name
    if status.duration_until_reset is not None:
        message.duration_until_reset.seconds = status.duration_until_reset
    return message


def to_response(result: RateLimitResult) -> rls_pb2.RateLimitResponse:
    """The protobuf answer for a service result."""
    return rls_pb2.RateLimitResponse(
        overall_code=_CODE[result.overall_code],
        statuses=[_status(s) for s in result.statuses],
    )


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):
    """The gRPC face of `RateLimitService` (grpc.aio)."""

    def __init__(self, service: RateLimitService, tracing: Tracing | None = None) -> None:
        """`tracing`: on — each call is a decision span, child of the W3C context in the call's
        gRPC metadata (if any); its attributes name the domain and the descriptors' entry keys
        (never their values, which may be client data) and the overall code."""
        self._service = service
        self._tracing = tracing

    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> rls_pb2.RateLimitResponse:
        if self._tracing is None:
            return await self._should_rate_limit(request, context)
        parent = from_pairs(context.invocation_metadata() or ())
        with self._tracing.decision(_RLS_METHOD, parent) as scope:
            response = await self._should_rate_limit(request, context)
            span = scope.span
            if span.is_recording():
                span.set_attribute("gatekeeper.ratelimit.domain", request.domain)
                span.set_attribute(
                    "gatekeeper.ratelimit.descriptors",
                    [",".join(e.key for e in d.entries) for d in request.descriptors],
                )
            scope.annotate(
                outcome=rls_pb2.RateLimitResponse.Code.Name(response.overall_code).lower()
            )
        return response

    async def _should_rate_limit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> rls_pb2.RateLimitResponse:
        try:
            result = await self._service.should_rate_limit(
                request.domain,
                [[(e.key, e.value) for e in d.entries] for d in request.descriptors],
                request.hits_addend,
                [
                    d.hits_addend.value if d.HasField("hits_addend") else None
                    for d in request.descriptors
                ],
                overrides=[_override(d) for d in request.descriptors],
            )
        except RateLimitRequestError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (RedisError, OSError) as exc:
            log.warning("rate limit store unavailable: %s", type(exc).__name__)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "rate limit store unavailable")
        return to_response(result)


def add_to_server(
    server: grpc.aio.Server, service: RateLimitService, tracing: Tracing | None = None
) -> RateLimitServicer:
    """Register ShouldRateLimit on `server` (before it starts); returns the servicer."""
    servicer = RateLimitServicer(service, tracing)
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)
    return servicer
