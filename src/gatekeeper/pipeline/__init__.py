"""The billing path's worker side (DESIGN.md §2): stream consumers, billing sink, dead letter,
trimming, reconcile, and the `worker` / `export` / `reconcile` commands."""

from gatekeeper.pipeline.commands import EXPORT, RECONCILE, WORKER, CommandSpec
from gatekeeper.pipeline.deadletter import DeadLetter
from gatekeeper.pipeline.health import LoopHealth, WorkerHealth, WorkerStats
from gatekeeper.pipeline.reconcile import Difference, ReconcileReport, reconcile
from gatekeeper.pipeline.sink import BillingSink
from gatekeeper.pipeline.trim import StreamTrimmer
from gatekeeper.pipeline.worker import (
    BILLING_GROUP,
    BillingWorker,
    WorkerFailed,
    WorkerOptions,
    consumer_name,
)

__all__ = [
    "BILLING_GROUP",
    "EXPORT",
    "RECONCILE",
    "WORKER",
    "BillingSink",
    "BillingWorker",
    "CommandSpec",
    "DeadLetter",
    "Difference",
    "LoopHealth",
    "ReconcileReport",
    "StreamTrimmer",
    "WorkerFailed",
    "WorkerHealth",
    "WorkerOptions",
    "WorkerStats",
    "consumer_name",
    "reconcile",
]
