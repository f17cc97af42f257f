"""Usage of the demo customers as gatekeeper counts it, polled over gatekeeper's gRPC API
(`gatekeeper.v1.Gatekeeper/GetUsage`, the same counters the decisions use)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from gatekeeper.v1 import gatekeeper_pb2 as pb
from gatekeeper.v1 import gatekeeper_pb2_grpc as pb_grpc

__all__ = ["LimitView", "UsagePoller"]


@dataclass(frozen=True, slots=True)
class LimitView:
    kind: str  # quota | rate | spend
    feature: str  # "" for spend
    limit: int  # units; nano-units for spend
    used: int
    window_s: int

    @property
    def ratio(self) -> float:
        return self.used / self.limit if self.limit > 0 else 0.0


class UsagePoller:
    """Every `interval_s`, GetUsage for each customer; `latest[customer]` holds the answer."""

    def __init__(self, *, target: str, customers: Sequence[str], interval_s: float = 1.0) -> None:
        self._target = target
        self._customers = tuple(customers)
        self._interval_s = interval_s
        self._stopping = asyncio.Event()
        self.latest: dict[str, tuple[LimitView, ...]] = {}
        self.failures = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self._target) as channel:
            stub = pb_grpc.GatekeeperStub(channel)  # type: ignore[no-untyped-call]
            while not self._stopping.is_set():
                await self.poll_once(stub)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._interval_s)

    async def poll_once(self, stub: pb_grpc.GatekeeperStub) -> None:
        for customer in self._customers:
            try:
                answer = await stub.GetUsage(pb.GetUsageRequest(customer_id=customer), timeout=2.0)
            except grpc.aio.AioRpcError:
                self.failures += 1  # unknown customer, or serve busy/stopping: keep the last
                continue
            self.latest[customer] = tuple(
                LimitView(x.kind, x.feature, x.limit, x.used, x.window_seconds)
                for x in answer.limits
            )
