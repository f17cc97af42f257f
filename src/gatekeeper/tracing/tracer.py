"""`Tracing`: the one object the composition roots build when tracing is on (None when off).

It owns a TracerProvider (sampler and resource from TracingConfig, a BatchSpanProcessor
feeding OtlpHttpSpanExporter) and makes gatekeeper's spans:

- `decision(name, parent)`: a SERVER span, child of the W3C context Envoy (or a gRPC caller)
  sent, made current for the decision's coroutine so the Redis call nests under it;
- `redis(script)`: a CLIENT span under the current decision span, with the decision span's
  traceparent for the usage/alert stream entries (None when no decision span is recording);
- `linked(name, traceparents)`: a root span of the worker linked to the decisions it handles.

No provider is installed globally (no module state): spans come from this object only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    get_current_span,
    set_span_in_context,
)

from gatekeeper.tracing.config import TracingConfig, parse_tracing_env
from gatekeeper.tracing.exporter import OtlpHttpSpanExporter
from gatekeeper.tracing.w3c import format_traceparent, parse

__all__ = [
    "ATTR_CUSTOMER",
    "ATTR_DECISION_ID",
    "ATTR_FEATURES",
    "ATTR_OUTCOME",
    "DecisionSpan",
    "RedisSpan",
    "Tracing",
    "end_span",
]

log = logging.getLogger(__name__)

ATTR_CUSTOMER = "gatekeeper.customer"
ATTR_FEATURES = "gatekeeper.features"
ATTR_OUTCOME = "gatekeeper.outcome"
ATTR_DECISION_ID = "gatekeeper.decision_id"
ATTR_PLAN = "gatekeeper.plan"
MAX_LINKS = 128  # the SDK's default link limit: a billing batch links at most this many


def _version() -> str:
    try:
        return version("gatekeeper")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _sampler(config: TracingConfig) -> Sampler:
    ratio = TraceIdRatioBased(config.sampler_ratio)
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }
    return samplers[config.sampler]


def _error(span: Span, exc: BaseException) -> None:
    # the type only: an exception's text could carry request data (never key material)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def end_span(span: Span, error: BaseException | None = None) -> None:
    """End `span`, with an ERROR status naming the exception's type when `error` is given."""
    if error is not None:
        _error(span, error)
    span.end()


class DecisionSpan:
    """A decision's SERVER span, current (for the Redis span) while the `with` block runs.

    Enter and exit in the same task (contextvars): the decision's own coroutine."""

    __slots__ = ("_token", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token: object = None

    def __enter__(self) -> DecisionSpan:
        self._token = otel_context.attach(set_span_in_context(self.span))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        if exc is not None:
            _error(self.span, exc)
        self.span.end()

    def annotate(
        self,
        *,
        outcome: str,
        customer: str | None = None,
        features: Sequence[str] = (),
        decision_id: str | None = None,
        plan: str | None = None,
        error: bool = False,
    ) -> None:
        """The decision's attributes (never key material: ids, names and the outcome)."""
        span = self.span
        if not span.is_recording():
            return
        span.set_attribute(ATTR_OUTCOME, outcome)
        if customer:
            span.set_attribute(ATTR_CUSTOMER, customer)
        if features:
            span.set_attribute(ATTR_FEATURES, list(features))
        if decision_id:
            span.set_attribute(ATTR_DECISION_ID, decision_id)
        if plan:
            span.set_attribute(ATTR_PLAN, plan)
        if error:
            span.set_status(Status(StatusCode.ERROR, outcome))


class RedisSpan:
    """The CLIENT span of one script call, and the decision's traceparent for the streams."""

    __slots__ = ("span", "traceparent")

    def __init__(self, span: Span, traceparent: str) -> None:
        self.span = span
        self.traceparent = traceparent

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            _error(self.span, error)
        self.span.end()


class Tracing:
    def __init__(
        self,
        config: TracingConfig,
        *,
        processor: SpanProcessor | None = None,
    ) -> None:
        """`processor`: where finished spans go (default: a BatchSpanProcessor feeding
        OtlpHttpSpanExporter with the config's limits; tests pass an in-memory one)."""
        self.config = config
        self.exporter: OtlpHttpSpanExporter | None = None
        if processor is None:
            self.exporter = OtlpHttpSpanExporter(config)
            processor = BatchSpanProcessor(
                self.exporter,
                max_queue_size=config.max_queue_size,
                schedule_delay_millis=config.schedule_delay_ms,
                max_export_batch_size=config.max_export_batch_size,
                export_timeout_millis=config.export_timeout_ms,
            )
        resource = Resource(
            {
                "telemetry.sdk.language": "python",
                "telemetry.sdk.name": "opentelemetry",
                "service.version": _version(),
                **dict(config.resource),
            }
        )
        self.provider = TracerProvider(
            sampler=_sampler(config), resource=resource, shutdown_on_exit=False
        )
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer("gatekeeper", _version())

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, service_name: str) -> Tracing | None:
        """Tracing as the OTEL_* variables in `env` ask, or None (off: the default).
        Raises TracingConfigError naming the variable at fault."""
        config = parse_tracing_env(env, service_name=service_name)
        if config is None:
            return None
        log.info("tracing on: OTLP (%s) to %s", config.protocol, config.endpoint)
        return cls(config)

    def decision(
        self,
        name: str,
        parent: SpanContext | None,
        *,
        attributes: Mapping[str, str] | None = None,
    ) -> DecisionSpan:
        """A SERVER span, child of `parent` (a new trace when None); use as `with`."""
        ctx = (
            set_span_in_context(NonRecordingSpan(parent)) if parent is not None else Context()
        )  # an empty Context: never a parent left current by someone else
        span = self._tracer.start_span(
            name, context=ctx, kind=SpanKind.SERVER, attributes=attributes
        )
        return DecisionSpan(span)

    def redis(self, script: str) -> RedisSpan | None:
        """A CLIENT span for one EVALSHA of `script` under the current decision span, or None
        when there is none recording (a fail-open replay, an unsampled trace)."""
        current = get_current_span()
        if not current.is_recording():
            return None
        span = self._tracer.start_span(
            f"EVALSHA {script}",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": "redis",
                "db.system.name": "redis",
                "db.operation": "EVALSHA",
                "db.operation.name": "EVALSHA",
                "gatekeeper.script": script,
            },
        )
        return RedisSpan(span, format_traceparent(current.get_span_context()))

    def linked(
        self,
        name: str,
        traceparents: Iterable[str],
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, str | int] | None = None,
    ) -> Span:
        """A root span linked to each distinct decision context in `traceparents` (at most
        MAX_LINKS; malformed ones are skipped). The caller ends it."""
        links: list[Link] = []
        for traceparent in dict.fromkeys(t for t in traceparents if t):
            if len(links) >= MAX_LINKS:
                break
            found = parse(traceparent)
            if found is not None:
                links.append(Link(found))
        return self._tracer.start_span(
            name, context=Context(), kind=kind, links=links, attributes=attributes
        )

    def shutdown(self) -> None:
        """Export what is queued (within the export timeout) and stop. Blocking."""
        self.provider.shutdown()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """shutdown() in a thread, waited for at most `timeout_s` (never blocks the loop)."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self.shutdown), timeout_s)
        except TimeoutError:
            log.warning(
                "tracing: spans still queued after %.1fs at shutdown were dropped", timeout_s
            )
