"""The worker's shutdown is bounded: a loop that does not return after stop() is reported with
where it waits, then cancelled; loops that stop return normally."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gatekeeper.pipeline.commands import _run_all


class Polite:
    def __init__(self) -> None:
        self._stop = asyncio.Event()

    async def run(self) -> None:
        await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()


class Stuck:
    async def run(self) -> None:
        await self._forever()

    async def _forever(self) -> None:
        await asyncio.Event().wait()  # never set: a loop that ignores stop()

    def stop(self) -> None:
        pass


async def test_a_loop_that_ignores_stop_is_logged_and_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    polite, stuck, stopped = Polite(), Stuck(), asyncio.Event()
    caplog.set_level(logging.ERROR, logger="gatekeeper.worker")

    async def sigterm() -> None:
        await asyncio.sleep(0.05)
        polite.stop()
        stuck.stop()
        stopped.set()

    async with asyncio.timeout(5):
        await asyncio.gather(_run_all([polite, stuck], stopped=stopped, grace_s=0.2), sigterm())
    text = caplog.text
    assert "1 loop(s) still running" in text and "_forever" in text


async def test_loops_that_stop_return_without_a_report(caplog: pytest.LogCaptureFixture) -> None:
    loops, stopped = [Polite(), Polite()], asyncio.Event()
    caplog.set_level(logging.ERROR, logger="gatekeeper.worker")

    async def sigterm() -> None:
        await asyncio.sleep(0.05)
        for loop in loops:
            loop.stop()
        stopped.set()

    async with asyncio.timeout(5):
        await asyncio.gather(_run_all(loops, stopped=stopped, grace_s=0.2), sigterm())
    assert "still running" not in caplog.text
