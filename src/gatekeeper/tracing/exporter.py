"""gatekeeper's own OTLP/HTTP span exporter (no opentelemetry-exporter-otlp dependency).

Why not the official exporter: xds-protos ships stale copies of `opentelemetry/proto/*` that
break its imports depending on install order. This one encodes the request itself
(otlp.py) and POSTs it with the standard library.

Runs in the BatchSpanProcessor's thread, never on the event loop, so a blocking
`urllib.request` call is fine there. A retryable answer (429, 502, 503, 504, or a connection
error) is retried with backoff while the export timeout lasts; anything else drops the batch
(logged once per kind of failure, never with the headers).
"""

from __future__ import annotations

import gzip
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gatekeeper.backoff import Backoff
from gatekeeper.tracing.config import JSON, TracingConfig
from gatekeeper.tracing.otlp import KeyValueCache, encode_json, encode_protobuf

__all__ = ["OtlpHttpSpanExporter"]

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({429, 502, 503, 504})
_MAX_ATTEMPTS = 5
_RETRY = Backoff(0.1, 60.0)  # doubling; the export timeout ends it first
Post = Callable[[urllib.request.Request, float], int]


class OtlpHttpSpanExporter(SpanExporter):
    def __init__(self, config: TracingConfig, *, post: Post | None = None) -> None:
        """`post` sends one request and returns its HTTP status (tests inject one)."""
        self._config = config
        self._json = config.protocol == JSON
        self._cache: KeyValueCache = {}  # encoded attributes that repeat (bounded)
        self._context = (
            ssl.create_default_context(cafile=config.certificate) if config.certificate else None
        )
        self._post = post or self._urlopen
        self._stopped = threading.Event()
        self._warned: set[str] = set()
        self.exported = 0  # spans accepted by the receiver
        self.failed = 0  # spans dropped after a failed export

    def _urlopen(self, request: urllib.request.Request, timeout_s: float) -> int:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=self._context) as r:
                r.read()
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def _request(self, spans: Sequence[ReadableSpan]) -> urllib.request.Request:
        body = encode_json(spans) if self._json else encode_protobuf(spans, self._cache)
        headers = {"Content-Type": "application/json" if self._json else "application/x-protobuf"}
        headers["User-Agent"] = "gatekeeper-otlp-exporter"
        if self._config.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        for name, value in self._config.headers:
            headers[name] = value
        return urllib.request.Request(self._config.endpoint, data=body, headers=headers)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopped.is_set() or not spans:
            return SpanExportResult.FAILURE if spans else SpanExportResult.SUCCESS
        request = self._request(spans)
        deadline = time.monotonic() + self._config.timeout_ms / 1000
        why = "timed out"
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                status = self._post(request, left)
            except (OSError, ValueError) as exc:  # URLError is an OSError
                status, why = 0, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            else:
                why = f"HTTP {status}"
            if 200 <= status < 300:
                self.exported += len(spans)
                return SpanExportResult.SUCCESS
            if status and status not in _RETRYABLE:
                break
            wait = _RETRY.delay(attempt)
            if self._stopped.wait(min(wait, max(deadline - time.monotonic(), 0))):
                break
        self.failed += len(spans)
        if why not in self._warned:  # once per kind: a collector down must not flood the log
            self._warned.add(why)
            log.warning(
                "OTLP export to %s failed (%s); %d span(s) dropped",
                self._config.endpoint, why, len(spans),
            )  # fmt: skip
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._stopped.set()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
