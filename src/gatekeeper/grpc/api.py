"""gatekeeper.v1.Gatekeeper: the own API for services not behind Envoy."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import grpc
from google.protobuf import timestamp_pb2

from gatekeeper.clock import Clock, SystemClock
from gatekeeper.edge import IdentityFailure, key_hash
from gatekeeper.edge.answers import answer_for, answer_unauthorized
from gatekeeper.engine import (
    DecisionEngine,
    DecisionRequest,
    LimitStatus,
    MeterRequest,
    Outcome,
    PolicySource,
)
from gatekeeper.errors import StoreUnavailable
from gatekeeper.events import UsageEvent
from gatekeeper.store.feed import UsageFeed
from gatekeeper.tracing.w3c import from_pairs
from gatekeeper.v1 import gatekeeper_pb2 as pb
from gatekeeper.v1 import gatekeeper_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from gatekeeper.tracing import Tracing

__all__ = ["GatekeeperServicer"]

_OUTCOME = {
    Outcome.ALLOWED: pb.ALLOWED,
    Outcome.UNKNOWN_CUSTOMER: pb.UNKNOWN_CUSTOMER,
    Outcome.NOT_ENTITLED: pb.NOT_ENTITLED,
    Outcome.QUOTA_EXHAUSTED: pb.QUOTA_EXHAUSTED,
    Outcome.RATE_LIMITED: pb.RATE_LIMITED,
    Outcome.SPEND_CAP: pb.SPEND_CAP,
}


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


def _limit(s: LimitStatus) -> pb.Limit:
    return pb.Limit(
        kind=s.kind.value,
        feature=s.feature or "",
        limit=s.limit,
        used=s.used,
        remaining=s.remaining,
        reset_at=_ts(s.reset_at),
        window_seconds=s.window_s,
    )


def _event(e: UsageEvent) -> pb.UsageEvent:
    return pb.UsageEvent(
        id=e.id,
        kind=e.kind.value,
        customer_id=e.customer,
        plan=e.plan,
        feature=e.feature,
        unit=e.unit,
        quantity=e.quantity,
        granted=e.granted,
        billable=e.billable,
        amount_nano=e.amount_nano,
        currency=e.currency,
        decision_id=e.decision_id,
        request_id=e.request_id,
        idempotency_key=e.idempotency_key,
        time=_ts(e.time),
    )


class GatekeeperServicer(pb_grpc.GatekeeperServicer):
    def __init__(
        self,
        *,
        engine: DecisionEngine,
        policy: PolicySource,
        feed: UsageFeed,
        clock: Clock | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """`tracing`: on — each Check is a decision span, child of the caller's W3C context
        (gRPC metadata `traceparent`/`tracestate`)."""
        self._engine = engine
        self._policy = policy
        self._feed = feed
        self._clock = clock or SystemClock()
        self._tracing = tracing

    async def _customer(self, api_key: str, customer_id: str) -> str | IdentityFailure:
        """Raises StoreUnavailable."""
        if api_key:
            owner = await self._policy.key_owner(key_hash(api_key))
            if owner is None or not owner[1].live(self._clock.now):
                return IdentityFailure.INVALID
            return owner[0].id
        return customer_id or IdentityFailure.MISSING

    async def Check(
        self, request: pb.CheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckResponse:
        if self._tracing is None:
            return await self._check(request, context)
        parent = from_pairs(context.invocation_metadata() or ())
        with self._tracing.decision("gatekeeper.v1.Gatekeeper/Check", parent) as scope:
            response = await self._check(request, context)
            scope.annotate(
                outcome=pb.Outcome.Name(response.outcome).lower(),
                customer=response.customer_id,
                features=tuple(
                    dict.fromkeys((*request.requires, *(m.feature for m in request.meters)))
                ),
                decision_id=response.decision_id,
                plan=response.plan,
            )
        return response

    async def _check(
        self, request: pb.CheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckResponse:
        try:
            customer = await self._customer(request.api_key, request.customer_id)
        except StoreUnavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "usage store unavailable")
        if isinstance(customer, IdentityFailure):
            unauthorized = answer_unauthorized(customer.value)
            return pb.CheckResponse(
                allowed=False,
                outcome=pb.UNKNOWN_CUSTOMER,
                http_status=unauthorized.status,
                problem_json=unauthorized.body.decode(),
            )
        try:
            meters = tuple(MeterRequest(m.feature, m.quantity, m.reserve) for m in request.meters)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        decision_request = DecisionRequest(
            customer,
            requires=tuple(request.requires),
            meters=meters,
            idempotency_key=request.idempotency_key or None,
            request_id=request.request_id,
        )
        try:
            d = await self._engine.decide(decision_request)
        except StoreUnavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "usage store unavailable")
        policy = self._policy.current()
        answer = answer_for(d, now=datetime.now().astimezone(), currency=policy.currency)
        return pb.CheckResponse(
            allowed=d.allowed,
            outcome=_OUTCOME[d.outcome],
            decision_id=d.decision_id,
            customer_id=d.customer_id,
            plan=d.plan or "",
            feature=d.feature or "",
            limits=[_limit(s) for s in d.limits],
            denied_by=_limit(d.denied_by) if d.denied_by else None,
            retry_after_seconds=d.retry_after_s or 0.0,
            cost_nano=d.cost_nano,
            currency=policy.currency,
            overage=list(d.overage),
            reservation_id=d.reservation_id or "",
            replayed=d.replayed,
            config_headers=dict(d.config_values),
            http_status=answer.status,
            problem_json=answer.body.decode() if not answer.allowed else "",
        )

    async def Report(
        self, request: pb.ReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportResponse:
        try:
            r = await self._engine.settle(
                request.customer_id,
                request.reservation_id,
                dict(request.actual),
                request_id=request.request_id,
            )
        except StoreUnavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "usage store unavailable")
        return pb.ReportResponse(
            status=r.status.value, deltas=dict(r.deltas), cost_delta_nano=r.cost_delta_nano
        )

    async def GetUsage(
        self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUsageResponse:
        try:
            statuses = await self._engine.usage(request.customer_id)
        except StoreUnavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "usage store unavailable")
        if statuses is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown customer")
            raise AssertionError("abort raises")
        customer = await self._policy.customer(request.customer_id)
        if customer is None:  # removed in between
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown customer")
            raise AssertionError("abort raises")
        return pb.GetUsageResponse(
            customer_id=customer.id, plan=customer.plan, limits=[_limit(s) for s in statuses]
        )

    async def WatchUsage(self, request: pb.WatchUsageRequest, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        try:
            known = await self._policy.customer(request.customer_id)
        except StoreUnavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "usage store unavailable")
        if known is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown customer")
        async for event in self._feed.follow(request.customer_id):
            yield _event(event)
