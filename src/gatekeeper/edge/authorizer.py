"""The edge's one question: identify, resolve usage, decide, answer (transport-neutral)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter

from gatekeeper.clock import Clock
from gatekeeper.edge.answers import (
    Answer,
    answer_bad_request,
    answer_for,
    answer_unauthorized,
    answer_unavailable,
)
from gatekeeper.edge.backlog import OfflineBacklog, OfflineDecision
from gatekeeper.edge.identity import IdentityFailure, identify
from gatekeeper.edge.request import EdgeRequest
from gatekeeper.edge.routing import BadRequest, RouteTable, resolve_usage
from gatekeeper.engine import Decision, DecisionEngine, DecisionRequest, Outcome, PolicySource
from gatekeeper.engine.engine import new_decision_id
from gatekeeper.errors import StoreUnavailable
from gatekeeper.model import FeatureType, Policy, frozen_map
from gatekeeper.settings import FailClosedAnswer, FailureMode, Settings
from gatekeeper.stats import DecisionStats

__all__ = ["Authorizer"]

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "idempotency-key"


@dataclass(frozen=True, slots=True)
class _PolicyDerived:
    policy: Policy
    routes: RouteTable
    config_headers: frozenset[str]  # every config feature's upstream header

    @staticmethod
    def of(policy: Policy) -> _PolicyDerived:
        headers = frozenset(
            (f.header or f.name) for f in policy.features.values() if f.type is FeatureType.CONFIG
        )
        return _PolicyDerived(policy, RouteTable(policy.routes), headers)


class Authorizer:
    def __init__(
        self,
        *,
        policy: PolicySource,
        engine: DecisionEngine,
        settings: Settings,
        clock: Clock,
        backlog: OfflineBacklog | None = None,
        stats: DecisionStats | None = None,
        observe: Callable[[float], None] | None = None,
        key_used: Callable[[str, str], None] | None = None,
    ) -> None:
        """`stats`: per-process decision statistics for the dashboard (counted in memory).
        `observe`: called with each decision's duration in seconds (a metrics histogram).
        `key_used(customer, key id)`: an API key identified a caller (its last-used time)."""
        self._policy = policy
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._backlog = backlog
        self._stats = stats
        self._observe = observe
        self._key_used = key_used
        self._derived: _PolicyDerived | None = None
        self.counts: dict[str, int] = {}  # answers by outcome code
        self.store_errors = 0  # decisions the store could not answer (StoreUnavailable)

    def _of(self, policy: Policy) -> _PolicyDerived:
        """What the edge derives from the policy in force, rebuilt when it is replaced."""
        if self._derived is None or self._derived.policy is not policy:
            self._derived = _PolicyDerived.of(policy)
        return self._derived

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    async def check(self, request: EdgeRequest) -> Answer:
        """Answer one request. Never raises for anything a client can cause."""
        started = perf_counter()
        answer = await self._check(request)
        self._count(answer.outcome)
        if self._stats is not None:
            self._stats.record(answer.outcome, answer.metadata.get("customer"))
        if self._observe is not None:
            self._observe(perf_counter() - started)
        return answer

    def features(self, request: EdgeRequest) -> tuple[str, ...]:
        """The features `request` asks for (required, then metered), () when its usage cannot
        be resolved. For tracing: not on the untraced decision path."""
        policy = self._policy.current()
        try:
            usage = resolve_usage(policy, self._of(policy).routes, request)
        except BadRequest:
            return ()
        return tuple(dict.fromkeys((*usage.requires, *(m.feature for m in usage.meters))))

    async def _check(self, request: EdgeRequest) -> Answer:
        policy = self._policy.current()
        try:
            who = await identify(self._policy, request, self._settings.edge, self._clock)
        except StoreUnavailable as exc:  # the directory could not be read: nobody to admit
            self.store_errors += 1
            log.warning("store unavailable identifying a caller: %s", exc)
            return self._closed()
        if isinstance(who, IdentityFailure):
            return answer_unauthorized(who.value)
        if who.key_id is not None and self._key_used is not None:
            self._key_used(who.customer_id, who.key_id)
        derived = self._of(policy)
        try:
            usage = resolve_usage(policy, derived.routes, request)
        except BadRequest as exc:
            return answer_bad_request(str(exc), who.customer_id)
        decision_request = DecisionRequest(
            who.customer_id,
            requires=usage.requires,
            meters=usage.meters,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER) or None,
            request_id=request.request_id,
            route=f"{request.method} {request.path}",
        )
        try:
            decision = await self._engine.decide(decision_request)
        except StoreUnavailable as exc:
            self.store_errors += 1
            log.warning("store unavailable deciding for %s: %s", who.customer_id, exc)
            return self._store_down(policy, decision_request, usage.settle_headers, exc)
        return answer_for(
            decision,
            now=self._clock.now(),
            upgrade_url=self._settings.edge.upgrade_url,
            currency=policy.currency,
            settle_headers=usage.settle_headers,
            config_headers=derived.config_headers,
        )

    def _closed(self) -> Answer:
        return answer_unavailable(
            as_status=self._settings.edge.fail_closed_answer is FailClosedAnswer.STATUS_503
        )

    def _store_down(
        self,
        policy: Policy,
        request: DecisionRequest,
        settle: Mapping[str, str],
        error: StoreUnavailable,
    ) -> Answer:
        """Answer by the failure mode. A decision whose call may have landed (`error`'s
        decision id) is voided later when answered closed; admitted offline, it is recorded
        under that same id, which counts it once whether the call landed or not."""
        closed = self._closed()
        if self._settings.failure_mode is not FailureMode.OPEN or self._backlog is None:
            return closed
        customer = self._policy.cached_customer(request.customer_id)
        decision_id = error.decision_id or new_decision_id()
        if not self._backlog.add(OfflineDecision(request, self._clock.now(), decision_id)):
            log.error("offline backlog full: answering fail-closed")
            return closed
        self._engine.keep_lost(decision_id)
        decision = Decision(
            decision_id,
            Outcome.ALLOWED,
            request.customer_id,
            plan=customer.plan if customer else None,
            reservation_id=decision_id if any(m.reserve for m in request.meters) else None,
            config_values=frozen_map(
                {
                    (policy.features[f].header or f): v
                    for f, v in (customer.entitlements.config_values.items() if customer else ())
                }
            ),
        )
        answer = answer_for(
            decision,
            now=self._clock.now(),
            settle_headers=settle,
            config_headers=self._of(policy).config_headers,
        )
        return Answer(
            status=answer.status,
            outcome="allowed_offline",
            client_headers=answer.client_headers,
            upstream_headers=answer.upstream_headers,
            upstream_headers_to_remove=answer.upstream_headers_to_remove,
            metadata=frozen_map({**answer.metadata, "decision": "allowed_offline"}),
        )
