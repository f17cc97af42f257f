"""envoy.service.accesslog.v3.AccessLogService: settle reservations from Envoy's access log.

The ext_authz filter put the decision id, customer and `settle` map (feature=response header)
into dynamic metadata; the access log entry carries that metadata back with the response
headers Envoy was told to log. ALS is at-most-once: a lost entry leaves the reservation to
expire at its estimate; a repeated entry changes nothing (settlement is idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import grpc
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from gatekeeper.edge.answers import metadata_key
from gatekeeper.engine import DecisionEngine
from gatekeeper.errors import StoreUnavailable
from gatekeeper.grpc.authz import EXT_AUTHZ_NAMESPACE

__all__ = ["AccessLogServicer", "actuals_from_entry"]

log = logging.getLogger(__name__)


def actuals_from_entry(
    entry: accesslog_pb2.HTTPAccessLogEntry, *, charge_5xx: bool
) -> tuple[str, str, dict[str, int]] | None:
    """(customer, reservation id, feature -> actual) for an entry that settles, else None."""
    ns = entry.common_properties.metadata.filter_metadata.get(EXT_AUTHZ_NAMESPACE)
    if ns is None:
        return None
    fields: Mapping[str, object] = {metadata_key(k): v.string_value for k, v in ns.fields.items()}
    if not fields.get("reservation_id"):
        return None
    settle = str(fields.get("settle", ""))
    status = entry.response.response_code.value
    headers = {k.lower(): v for k, v in entry.response.response_headers.items()}
    actuals: dict[str, int] = {}
    for pair in filter(None, settle.split(",")):
        feature, _, header = pair.partition("=")
        if status >= 500 and not charge_5xx:
            actuals[feature] = 0
            continue
        raw = headers.get(header)
        if raw is not None and raw.strip().isdigit():
            actuals[feature] = int(raw.strip())
        elif raw is not None:
            log.warning("unreadable %s=%r on %s: the estimate stands", header, raw[:32], fields)
    if not actuals:
        return None
    return str(fields["customer"]), str(fields["reservation_id"]), actuals


class AccessLogServicer(als_pb2_grpc.AccessLogServiceServicer):
    def __init__(self, engine: DecisionEngine, *, charge_5xx: bool) -> None:
        self._engine = engine
        self._charge_5xx = charge_5xx
        self.failed = 0  # the store was unavailable: the reservation stands at its estimate
        self.results: dict[str, int] = {}  # settlements by SettleStatus value

    async def StreamAccessLogs(
        self,
        request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext,
    ) -> als_pb2.StreamAccessLogsResponse:
        async for message in request_iterator:
            for entry in message.http_logs.log_entry:
                await self._settle(entry)
        return als_pb2.StreamAccessLogsResponse()

    async def _settle(self, entry: accesslog_pb2.HTTPAccessLogEntry) -> None:
        found = actuals_from_entry(entry, charge_5xx=self._charge_5xx)
        if found is None:
            return
        customer, reservation, actuals = found
        try:
            result = await self._engine.settle(customer, reservation, actuals)
        except StoreUnavailable as exc:
            # the reservation will expire and stand at its estimate: counted, not silent
            self.failed += 1
            log.error("settlement of %s for %s failed: %s", reservation, customer, exc)
            return
        self.results[result.status.value] = self.results.get(result.status.value, 0) + 1
