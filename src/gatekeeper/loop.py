"""The one supervised-loop skeleton every background loop runs on.

A loop repeats one `step` until asked to stop. A step that fails with an error the loop
survives (`transient`: Redis unreachable, a receiver down, the billing store busy) is counted,
logged with the loop's name and retried after the one backoff (gatekeeper.backoff); a stop asked
meanwhile ends the wait at once. Any other error is logged with context and re-raised, so the
task that runs the loop ends and its supervisor marks the process not ready. A loop never
swallows what it cannot survive, and never spins.

`retry` is the same skeleton for one step run until it succeeds once (the billing worker's
reads and writes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.backoff import Backoff

__all__ = [
    "LoopState",
    "Outcome",
    "Periodic",
    "finish",
    "retry",
    "run_loop",
    "transient_types",
    "wait_or_stop",
]

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]
# after a transient failure: what the loop records (and, optionally, the shortest pause the
# error itself asks for, e.g. a receiver's Retry-After); None: the backoff alone decides
OnError = Callable[[BaseException], float | None]
Sleep = Callable[[float], Awaitable[None]]
_ABANDON_GRACE_S = 2.0  # a step abandoned at a stop: how long its cancellation may take


def transient_types(*types: type[BaseException]) -> Callable[[BaseException], bool]:
    """The usual `transient`: an instance of one of `types`."""
    return lambda exc: isinstance(exc, types)


@dataclass(slots=True)
class LoopState:
    """What one loop reports (for /healthz, /metrics and its owner's stats)."""

    failures: int = 0  # transient failures in a row (0 after a step that succeeded)
    errors: int = 0  # transient failures in all
    errors_by_type: dict[str, int] = field(default_factory=dict)
    last_error: str = ""
    died: str = ""  # the error that ended the loop, if one did

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.errors += 1
        name = type(exc).__name__
        self.errors_by_type[name] = self.errors_by_type.get(name, 0) + 1
        self.last_error = f"{name}: {exc}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How `retry` ended: `done` (the step succeeded) or stopped while failing."""

    done: bool


async def wait_or_stop(
    stopping: asyncio.Event, seconds: float, sleep: Sleep = asyncio.sleep
) -> bool:
    """Sleep `seconds` (with `sleep`: a test's clock) or until `stopping` is set; True when it
    was set."""
    if stopping.is_set():
        return True
    sleeper = asyncio.ensure_future(sleep(seconds))
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            task.cancel()
    return stopping.is_set()


async def _pause(
    name: str,
    exc: BaseException,
    *,
    state: LoopState,
    backoff: Backoff,
    stopping: asyncio.Event,
    on_error: OnError | None,
    sleep: Sleep,
) -> None:
    state.failed(exc)
    pause = backoff.delay(state.failures)
    asked = on_error(exc) if on_error is not None else None
    if asked is not None:
        pause = max(pause, asked)
    log.warning(
        "%s failed (%s); failure %d in a row, retrying in %.2fs",
        name,
        state.last_error,
        state.failures,
        pause,
    )
    await wait_or_stop(stopping, pause, sleep)


async def finish(task: asyncio.Future[Any], grace_s: float) -> bool:
    """Let `task` end within `grace_s`, then cancel it and give it `grace_s` more; True when
    it ended. Never waits longer: a task that ignores its cancellation (a library that
    swallows one) is logged and left behind, not awaited forever. Its error, if any, is
    retrieved (logged, not raised): the caller only wanted it gone."""
    done, _ = await asyncio.wait({task}, timeout=grace_s)
    if not done:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=grace_s)
    if not done:
        name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
        log.error("%s did not end within %.1fs of its cancellation: left behind", name, grace_s)
        return False
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("%r ended with %r while being finished", task, exc)
    return True


async def _step_or_stop(step: Step, stopping: asyncio.Event) -> bool:
    """Run `step`, abandoning it (cancelled) when `stopping` is set first; True if it ran to
    its end (its error, if any, raised)."""
    running = asyncio.ensure_future(step())
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({running, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the loop itself cancelled: take the step down too
        running.cancel()
        raise
    finally:
        stopper.cancel()
    if not running.done():
        running.cancel()
        await finish(running, _ABANDON_GRACE_S)
        return False
    running.result()
    return True


async def _attempt(
    name: str,
    run: Callable[[], Awaitable[bool]],
    state: LoopState,
    *,
    stopping: asyncio.Event,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    on_error: OnError | None,
    sleep: Sleep,
) -> bool | None:
    """One step: what `run` returned, or None after a transient failure (counted, passed to
    `on_error`, logged, paused: at once when a stop was asked). Anything else is logged and
    re-raised."""
    try:
        result = await run()
    except Exception as exc:
        if not transient(exc):
            state.died = f"{type(exc).__name__}: {exc}"
            log.exception("%s died: %s", name, state.died)
            raise
        await _pause(
            name, exc, state=state, backoff=backoff, stopping=stopping, on_error=on_error,
            sleep=sleep,
        )  # fmt: skip
        return None
    state.failures = 0
    return result


async def run_loop(
    name: str,
    step: Step,
    *,
    stopping: asyncio.Event,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    state: LoopState | None = None,
    on_error: OnError | None = None,
    abandon_on_stop: bool = False,
    every_s: float = 0.0,
    sleep: Sleep = asyncio.sleep,
) -> LoopState:
    """Run `step` until `stopping` is set (checked before each step). A transient failure is
    counted in `state`, passed to `on_error`, logged and followed by the backoff's pause;
    anything else is logged and re-raised (the loop dies, its supervisor sees it).
    `abandon_on_stop`: a stop cancels a step in flight (one that only waits on others'
    servers and holds nothing it must finish) instead of letting it end first. `every_s`: the
    pause after a step that succeeded (a periodic loop; 0: the next step at once, for steps
    that block on their own reads). `sleep`: how the pauses sleep (a test's clock)."""
    state = state if state is not None else LoopState()

    async def once() -> bool:  # False: abandoned at a stop
        if abandon_on_stop:
            return await _step_or_stop(step, stopping)
        await step()
        return True

    while not stopping.is_set():
        ran = await _attempt(
            name, once, state, stopping=stopping, transient=transient, backoff=backoff,
            on_error=on_error, sleep=sleep,
        )  # fmt: skip
        if ran is False:
            break
        if ran and every_s > 0:
            await wait_or_stop(stopping, every_s, sleep)
    return state


async def retry(
    name: str,
    step: Step,
    *,
    stopping: asyncio.Event,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    state: LoopState | None = None,
    on_error: OnError | None = None,
    sleep: Sleep = asyncio.sleep,
) -> Outcome:
    """Run `step` until it succeeds once (done) or `stopping` is set while it keeps failing
    (not done; the step is always tried at least once). Errors as in `run_loop`."""
    state = state if state is not None else LoopState()

    async def once() -> bool:
        await step()
        return True

    while True:
        ran = await _attempt(
            name, once, state, stopping=stopping, transient=transient, backoff=backoff,
            on_error=on_error, sleep=sleep,
        )  # fmt: skip
        if ran is not None:
            return Outcome(done=True)
        if stopping.is_set():
            return Outcome(done=False)


class Periodic:
    """`step` now, then every `every_s` until `stop()`: `run_loop` as an object with `run()`
    and `stop()` (what the worker's and serve's scheduled checks are)."""

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        every_s: float,
        transient: Callable[[BaseException], bool],
        backoff: Backoff,
    ) -> None:
        self._name = name
        self._step = step
        self._every_s = every_s
        self._transient = transient
        self._backoff = backoff
        self._stopping = asyncio.Event()
        self.state = LoopState()

    async def run(self) -> None:
        """Until `stop()`; a transient failure is retried with the backoff, anything else
        ends the loop with its error (run_loop)."""
        await run_loop(
            self._name,
            self._step,
            stopping=self._stopping,
            transient=self._transient,
            backoff=self._backoff,
            state=self.state,
            every_s=self._every_s,
        )

    def stop(self) -> None:
        self._stopping.set()
