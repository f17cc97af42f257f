"""Tracing into memory: the real Tracing facade, spans kept by an InMemorySpanExporter."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gatekeeper.tracing import Tracing, TracingConfig


def memory_tracing(sampler: str = "parentbased_always_on") -> tuple[Tracing, InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    config = TracingConfig(endpoint="http://127.0.0.1:9/v1/traces", sampler=sampler)
    return Tracing(config, processor=SimpleSpanProcessor(spans)), spans


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]
