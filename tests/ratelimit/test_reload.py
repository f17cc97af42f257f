"""ConfigWatcher driven by `run_once`: files added, changed, removed, broken; forced reloads."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from gatekeeper.clock import ManualClock
from gatekeeper.ratelimit import (
    Code,
    ConfigWatcher,
    RateLimitService,
    RedisCounterStore,
    load_ratelimit_config,
)
from gatekeeper.ratelimit import reload as reload_module
from gatekeeper.ratelimit.reload import fingerprint

ONE = (
    "domain: {domain}\ndescriptors:\n"
    "  - key: user\n    rate_limit: {{unit: minute, requests_per_unit: {n}}}\n"
)


def write(path: Path, text: str) -> None:
    """Write `text` and move the mtime on by a second, so even a same-size rewrite within the
    file system's timestamp granularity is a change."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    stamp = max(path.stat().st_mtime_ns, old + 1_000_000_000)
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ratelimit"
    folder.mkdir()
    write(folder / "a.yaml", ONE.format(domain="a", n=2))
    return folder


@pytest.fixture
def service(folder: Path, store: RedisCounterStore, clock: ManualClock) -> RateLimitService:
    return RateLimitService(load_ratelimit_config(folder), store, clock)


@pytest.fixture
def watcher(folder: Path, service: RateLimitService, clock: ManualClock) -> ConfigWatcher:
    seen = fingerprint(folder)
    return ConfigWatcher(path=folder, service=service, clock=clock, seen=seen, loaded_at=0.0)


def domains(service: RateLimitService) -> list[str]:
    return [d.domain for d in service.config.domains]


async def remaining(service: RateLimitService, domain: str) -> tuple[Code, int | None]:
    result = await service.should_rate_limit(domain, [[("user", "u1")]])
    status = result.statuses[0]
    limit = status.current_limit
    return status.code, None if limit is None else status.limit_remaining


async def test_nothing_changed_nothing_reloaded(watcher: ConfigWatcher) -> None:
    assert await watcher.run_once() is False
    assert (watcher.reloads, watcher.failures, watcher.valid) == (0, 0, True)


async def test_a_file_added_applies(
    folder: Path, watcher: ConfigWatcher, service: RateLimitService, clock: ManualClock
) -> None:
    assert await remaining(service, "b") == (Code.OK, None)  # unknown domain: no limit
    write(folder / "b.yaml", ONE.format(domain="b", n=1))
    assert await watcher.run_once() is True
    assert domains(service) == ["a", "b"]
    assert await remaining(service, "b") == (Code.OK, 0)
    assert (await remaining(service, "b"))[0] is Code.OVER_LIMIT
    assert (watcher.reloads, watcher.valid) == (1, True)
    assert watcher.loaded_at == clock.now().timestamp()
    assert await watcher.run_once() is False  # once


async def test_a_changed_limit_keeps_the_count(
    folder: Path, watcher: ConfigWatcher, service: RateLimitService
) -> None:
    assert await remaining(service, "a") == (Code.OK, 1)
    assert await remaining(service, "a") == (Code.OK, 0)
    write(folder / "a.yaml", ONE.format(domain="a", n=5))  # same size, later mtime
    assert await watcher.run_once() is True
    # the counter's key is its domain, entries and window, not its limit: 2 hits so far
    assert await remaining(service, "a") == (Code.OK, 2)
    series = {s.descriptor: s.total_hits for s in service.stats.series() if s.domain == "a"}
    assert series == {"user": 3}  # and the statistics series too


async def test_a_file_removed_drops_its_domain(
    folder: Path, watcher: ConfigWatcher, service: RateLimitService
) -> None:
    write(folder / "b.yaml", ONE.format(domain="b", n=1))
    await watcher.run_once()
    (folder / "b.yaml").unlink()
    assert await watcher.run_once() is True
    assert domains(service) == ["a"]
    assert await remaining(service, "b") == (Code.OK, None)


async def test_a_broken_file_keeps_the_config_and_is_reported_once(
    folder: Path,
    watcher: ConfigWatcher,
    service: RateLimitService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = service.config
    write(
        folder / "c.yaml",
        "domain: c\ndescriptors:\n  - key: user\n    rate_limit: {unit: fortnight}\n",
    )
    with caplog.at_level(logging.ERROR, logger=reload_module.__name__):
        assert await watcher.run_once() is False
    assert service.config is config
    assert (watcher.failures, watcher.valid, watcher.reloads) == (1, False, 0)
    assert watcher.last_error is not None and f"{folder / 'c.yaml'}:4:" in watcher.last_error
    assert "fortnight" in caplog.text and "keeping the config in force" in caplog.text
    assert await remaining(service, "a") == (Code.OK, 1)  # still served as before
    assert await watcher.run_once() is False
    assert watcher.failures == 1  # the same broken files are not reported again

    write(folder / "c.yaml", ONE.format(domain="c", n=3))  # fixed
    assert await watcher.run_once() is True
    assert (watcher.failures, watcher.valid, watcher.last_error) == (1, True, None)
    assert domains(service) == ["a", "c"]


async def test_a_missing_directory_keeps_the_config(
    folder: Path, watcher: ConfigWatcher, service: RateLimitService
) -> None:
    config = service.config
    (folder / "a.yaml").unlink()
    folder.rmdir()
    assert await watcher.run_once() is False
    assert service.config is config and watcher.failures == 1


async def test_a_requested_reload_rereads_unchanged_looking_files(
    folder: Path, watcher: ConfigWatcher, service: RateLimitService
) -> None:
    path = folder / "a.yaml"
    stamp = path.stat().st_mtime_ns
    path.write_text(ONE.format(domain="a", n=7))  # same size...
    os.utime(path, ns=(stamp, stamp))  # ...and mtime: polling cannot see it
    assert await watcher.run_once() is False
    watcher.request_reload()  # what a message on <prefix>:invalidate does
    assert await watcher.run_once() is True
    assert await remaining(service, "a") == (Code.OK, 6)
    assert await watcher.run_once() is False  # the request is used up


async def test_a_load_that_raced_a_write_is_retried_not_reported(
    folder: Path,
    watcher: ConfigWatcher,
    service: RateLimitService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(folder / "c.yaml", "domain: c\ndescriptors:\n  - key: user\n    rate_limit: {unit: mi")
    real = fingerprint
    calls = iter([real(folder), ("still", "being", "written")])
    monkeypatch.setattr(reload_module, "fingerprint", lambda path: next(calls, real(path)))
    assert await watcher.run_once() is False
    assert (watcher.failures, watcher.valid) == (0, True)  # looked again, not reported
    write(folder / "c.yaml", ONE.format(domain="c", n=3))  # the writer finished
    assert await watcher.run_once() is True
    assert domains(service) == ["a", "c"]


async def test_run_polls_until_stopped(
    folder: Path, service: RateLimitService, clock: ManualClock
) -> None:
    watcher = ConfigWatcher(
        path=folder, service=service, clock=clock, seen=fingerprint(folder), interval_s=0.05
    )
    task = asyncio.create_task(watcher.run())
    try:
        write(folder / "b.yaml", ONE.format(domain="b", n=1))
        async with asyncio.timeout(2):
            while domains(service) != ["a", "b"]:
                await asyncio.sleep(0.02)
        stamp = (folder / "b.yaml").stat().st_mtime_ns
        (folder / "b.yaml").write_text(ONE.format(domain="b", n=4))
        os.utime(folder / "b.yaml", ns=(stamp, stamp))
        watcher.request_reload()  # wakes the loop at once
        async with asyncio.timeout(2):
            while watcher.reloads < 2:
                await asyncio.sleep(0.01)
    finally:
        watcher.stop()
        async with asyncio.timeout(2):
            await task
