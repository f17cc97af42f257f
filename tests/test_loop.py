"""The one supervised-loop skeleton (gatekeeper/loop.py): transient failures retried after the
one backoff, counted, a stop ending a pause at once, anything else raised; `retry` for one
step; a stop abandoning a step in flight only when asked to."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.backoff import Backoff
from gatekeeper.loop import LoopState, finish, retry, run_loop, transient_types, wait_or_stop

BACKOFF = Backoff(0.5, 4.0)
TRANSIENT = transient_types(ConnectionError)


class Script:
    """A step that fails (ConnectionError) or succeeds as told, then stops the loop; sleeps
    are recorded instead of slept."""

    def __init__(self, outcomes: list[bool], stopping: asyncio.Event) -> None:
        self.outcomes = list(outcomes)
        self.stopping = stopping
        self.pauses: list[float] = []
        self.calls = 0

    async def step(self) -> None:
        self.calls += 1
        ok = self.outcomes.pop(0)
        if not self.outcomes:
            self.stopping.set()
        if not ok:
            raise ConnectionError("down")

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_each_failure_pauses_by_the_backoff_of_the_failures_in_a_row(outcomes: list[bool]) -> None:
    async def main() -> tuple[Script, LoopState]:
        stopping = asyncio.Event()
        script = Script(outcomes, stopping)
        state = await run_loop(
            "t", script.step, stopping=stopping, transient=TRANSIENT, backoff=BACKOFF,
            sleep=script.sleep,
        )  # fmt: skip
        return script, state

    script, state = asyncio.run(main())
    expected, in_a_row = [], 0
    for ok in outcomes[:-1]:  # the last step sets the stop: its pause (if any) ends at once
        in_a_row = 0 if ok else in_a_row + 1
        if not ok:
            expected.append(BACKOFF.delay(in_a_row))
    assert script.calls == len(outcomes)
    assert script.pauses == expected
    assert state.errors == outcomes.count(False)
    trailing = 0  # the failures in a row it ended with
    for ok in reversed(outcomes):
        if ok:
            break
        trailing += 1
    assert state.failures == trailing


async def test_an_error_it_cannot_survive_is_raised_and_recorded() -> None:
    async def broken() -> None:
        raise RuntimeError("bug")

    state = LoopState()
    with pytest.raises(RuntimeError, match="bug"):
        await run_loop(
            "t", broken, stopping=asyncio.Event(), transient=TRANSIENT, backoff=BACKOFF,
            state=state,
        )  # fmt: skip
    assert state.died == "RuntimeError: bug" and state.errors == 0


async def test_a_stop_ends_the_pause_at_once() -> None:
    stopping = asyncio.Event()

    async def down() -> None:
        raise ConnectionError("down")

    loop = asyncio.create_task(
        run_loop("t", down, stopping=stopping, transient=TRANSIENT, backoff=Backoff(60, 60))
    )
    await asyncio.sleep(0.05)  # failed once, pausing 60 s
    stopping.set()
    async with asyncio.timeout(2):
        state = await loop
    assert state.failures == 1 and state.last_error == "ConnectionError: down"


async def test_the_error_may_ask_for_a_longer_pause_and_is_seen_first() -> None:
    stopping = asyncio.Event()
    seen: list[str] = []
    pauses: list[float] = []

    async def down() -> None:
        raise ConnectionError("busy")

    def on_error(exc: BaseException) -> float | None:
        seen.append(str(exc))
        return 9.0 if len(seen) == 1 else None

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            stopping.set()

    await run_loop(
        "t", down, stopping=stopping, transient=TRANSIENT, backoff=BACKOFF, on_error=on_error,
        sleep=sleep,
    )  # fmt: skip
    assert seen == ["busy", "busy"] and pauses == [9.0, BACKOFF.delay(2)]


async def test_a_periodic_loop_pauses_after_each_success() -> None:
    stopping = asyncio.Event()
    script = Script([True, True, True], stopping)
    await run_loop(
        "t", script.step, stopping=stopping, transient=TRANSIENT, backoff=BACKOFF, every_s=7.0,
        sleep=script.sleep,
    )  # fmt: skip
    assert script.calls == 3 and script.pauses == [7.0, 7.0]


@pytest.mark.parametrize("abandon", [True, False])
async def test_a_stop_abandons_a_step_in_flight_only_when_asked(abandon: bool) -> None:
    stopping = asyncio.Event()
    finished: list[bool] = []

    async def slow() -> None:
        stopping.set()
        await asyncio.sleep(0.2)
        finished.append(True)

    async with asyncio.timeout(2):
        await run_loop(
            "t", slow, stopping=stopping, transient=TRANSIENT, backoff=BACKOFF,
            abandon_on_stop=abandon,
        )  # fmt: skip
    assert finished == ([] if abandon else [True])


async def test_retry_runs_until_one_success_or_a_stop() -> None:
    stopping = asyncio.Event()
    script = Script([False, False, True, True], asyncio.Event())  # never stops by itself
    outcome = await retry(
        "t", script.step, stopping=stopping, transient=TRANSIENT, backoff=BACKOFF,
        sleep=script.sleep,
    )  # fmt: skip
    assert outcome.done and script.calls == 3
    assert script.pauses == [BACKOFF.delay(1), BACKOFF.delay(2)]

    async def down() -> None:
        raise ConnectionError("down")

    stopping.set()
    state = LoopState()
    outcome = await retry(
        "t", down, stopping=stopping, transient=TRANSIENT, backoff=BACKOFF, state=state
    )
    assert not outcome.done and state.errors == 1  # tried once, then the stop


async def test_wait_or_stop_says_whether_the_stop_came() -> None:
    stopping = asyncio.Event()
    assert not await wait_or_stop(stopping, 0.01)
    stopping.set()
    assert await wait_or_stop(stopping, 60)


async def test_finish_never_waits_forever_on_a_task_that_swallows_its_cancellation() -> None:
    async def stubborn() -> None:
        for _ in range(10):  # bounded: 10 x 50 ms
            with contextlib.suppress(asyncio.CancelledError):  # a misbehaving library
                await asyncio.sleep(0.05)

    polite = asyncio.create_task(asyncio.sleep(60))
    assert await finish(polite, grace_s=0.05) and polite.cancelled()
    task = asyncio.create_task(stubborn())
    async with asyncio.timeout(2):
        assert not await finish(task, grace_s=0.1)
    assert not task.done()
    await asyncio.wait({task}, timeout=2)  # it ends by itself (0.5 s)
