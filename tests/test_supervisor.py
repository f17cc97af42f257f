"""The App's Supervisor: a background task stuck in its cleanup never hangs a stop."""

from __future__ import annotations

import asyncio
import time

from gatekeeper.app import Supervisor


async def test_stop_gives_up_on_a_task_stuck_in_its_cleanup() -> None:
    failures: list[str] = []
    supervisor = Supervisor(on_failure=lambda name, exc: failures.append(name))
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await release.wait()  # a cleanup that waits on something that never comes

    async def polite() -> None:
        await asyncio.sleep(3600)

    supervisor.start("stubborn", stubborn())
    supervisor.start("polite", polite())
    await asyncio.sleep(0)
    started = time.monotonic()
    await supervisor.stop(grace_s=0.2)
    assert time.monotonic() - started < 2.0
    assert supervisor.tasks["polite"].cancelled()
    await asyncio.sleep(0)
    assert supervisor.tasks["stubborn"].cancelled()  # cancelled again, inside its cleanup
    assert failures == []  # stopping is not a failure
