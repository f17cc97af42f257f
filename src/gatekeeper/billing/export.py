"""Audit export of one customer's billing period: invoice lines with the events behind them.

Every line lists its event ids; the export checks, before writing anything, that each line's
totals equal the sums of its events (count, quantity, billable, amount_nano) and that
`amount_minor` is the half-even rounding of the line's amount. File totals (per currency) are
sums of lines. Raises `ExportMismatch` when the store disagrees with itself.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatekeeper.billing.protocol import BillingStore
from gatekeeper.billing.types import InvoiceLine, StoredEvent
from gatekeeper.forward.cloudevent import to_cloudevent
from gatekeeper.money import format_money, minor_units, round_to_minor
from gatekeeper.periods import Window

__all__ = [
    "ExportMismatch",
    "Invoice",
    "build_invoice",
    "write_cloudevents",
    "write_csv",
    "write_json",
]

_CSV_COLUMNS = (
    "line_id", "customer", "period_start", "period_end", "feature", "unit", "kind", "currency",
    "status", "event_count", "quantity", "granted", "billable_quantity", "amount_nano", "amount",
    "amount_minor", "event_ids",
)  # fmt: skip


class ExportMismatch(RuntimeError):
    """A line's totals differ from the sum of its events (the store is inconsistent)."""


@dataclass(frozen=True, slots=True)
class Invoice:
    customer: str
    window: Window
    lines: list[InvoiceLine]
    events: dict[int, list[StoredEvent]]  # line id -> its events

    def totals(self) -> dict[str, dict[str, int]]:
        """Per currency: amount_nano and amount_minor summed over lines."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: {"amount_nano": 0, "amount_minor": 0})
        for line in self.lines:
            out[line.currency]["amount_nano"] += line.amount_nano
            out[line.currency]["amount_minor"] += line.amount_minor
        return dict(out)


async def build_invoice(store: BillingStore, customer: str, window: Window) -> Invoice:
    """Read and cross-check the period's lines and events. Raises ExportMismatch."""
    start = window.start.date()
    lines = await store.invoice_lines(customer, start)
    by_key: dict[tuple[str, str, str], list[StoredEvent]] = defaultdict(list)
    for e in await store.invoice_events(customer, start):
        by_key[(e.event.feature, e.line_kind.value, e.event.currency)].append(e)
    events: dict[int, list[StoredEvent]] = {}
    for line in lines:
        mine = by_key.pop((line.feature, line.kind.value, line.currency), [])
        _check(line, mine)
        events[line.id] = mine
    if by_key:
        raise ExportMismatch(f"events without a line: {sorted(by_key)}")
    return Invoice(customer, window, lines, events)


def _check(line: InvoiceLine, events: list[StoredEvent]) -> None:
    got = (
        len(events),
        sum(e.event.quantity for e in events),
        sum(e.event.billable for e in events),
        sum(e.event.amount_nano for e in events),
    )
    want = (line.event_count, line.quantity, line.billable_quantity, line.amount_nano)
    if got != want:
        raise ExportMismatch(f"line {line.id} ({line.feature}/{line.kind}): {want} != {got}")
    if line.amount_minor != round_to_minor(line.amount_nano, line.currency):
        raise ExportMismatch(f"line {line.id}: amount_minor is not the rounded amount")


def _line_dict(line: InvoiceLine) -> dict[str, Any]:
    return {
        "line_id": line.id, "customer": line.customer,
        "period_start": line.period_start.isoformat(), "period_end": line.period_end.isoformat(),
        "feature": line.feature, "unit": line.unit, "kind": line.kind.value,
        "currency": line.currency, "status": line.status.value, "event_count": line.event_count,
        "quantity": line.quantity, "granted": line.granted,
        "billable_quantity": line.billable_quantity, "amount_nano": line.amount_nano,
        "amount": _billed(line.amount_minor, line.currency), "amount_minor": line.amount_minor,
    }  # fmt: skip


def _billed(amount_minor: int, currency: str) -> str:
    """What the line or total bills, as money is written everywhere ("0.68" beside its currency
    column; `amount_nano` keeps the exact sum)."""
    return format_money(amount_minor * 10 ** (9 - minor_units(currency)), currency, plain=True)


def _stem(invoice: Invoice) -> str:
    return f"invoice-{invoice.customer}-{invoice.window.start.date().isoformat()}"


def write_csv(invoice: Invoice, out_dir: Path) -> Path:
    """One row per line (event ids space-separated), then one `total` row per currency."""
    path = out_dir / f"{_stem(invoice)}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(_CSV_COLUMNS)
        for line in invoice.lines:
            row = _line_dict(line)
            row["event_ids"] = " ".join(e.event.id for e in invoice.events[line.id])
            w.writerow([row[c] for c in _CSV_COLUMNS])
        for currency, t in sorted(invoice.totals().items()):
            total: dict[str, object] = dict.fromkeys(_CSV_COLUMNS, "")
            total.update(line_id="total", customer=invoice.customer, currency=currency,
                         amount_nano=t["amount_nano"], amount=_billed(t["amount_minor"], currency),
                         amount_minor=t["amount_minor"])  # fmt: skip
            w.writerow([total[c] for c in _CSV_COLUMNS])
    return path


def write_json(invoice: Invoice, out_dir: Path) -> Path:
    """The invoice with every line's events (id, time, quantity, billable, amount_nano)."""
    path = out_dir / f"{_stem(invoice)}.json"
    lines = []
    for line in invoice.lines:
        d = _line_dict(line)
        d["events"] = [
            {"id": e.event.id, "time": e.event.time.isoformat(), "kind": e.event.kind.value,
             "quantity": e.event.quantity, "billable": e.event.billable,
             "amount_nano": e.event.amount_nano, "decision_id": e.event.decision_id}
            for e in invoice.events[line.id]
        ]  # fmt: skip
        lines.append(d)
    doc = {
        "customer": invoice.customer,
        "period_start": invoice.window.start.date().isoformat(),
        "period_end": invoice.window.end.date().isoformat(),
        "lines": lines,
        "totals": {
            currency: {**t, "amount": _billed(t["amount_minor"], currency)}
            for currency, t in invoice.totals().items()
        },
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def write_cloudevents(invoice: Invoice, out_dir: Path, *, source: str = "gatekeeper") -> Path:
    """The period's usage events as a CloudEvents 1.0 JSON batch (`application/cloudevents-
    batch+json`: an array of structured-mode events, the same objects the forwarder sends),
    in time order. Raises ValueError for an empty `source`."""
    path = out_dir / f"usage-{invoice.customer}-{invoice.window.start.date().isoformat()}.json"
    events = sorted(
        (e.event for line in invoice.lines for e in invoice.events[line.id]),
        key=lambda event: (event.time, event.id),
    )
    batch = [to_cloudevent(event, source=source) for event in events]
    path.write_text(json.dumps(batch, indent=2) + "\n", encoding="utf-8")
    return path
