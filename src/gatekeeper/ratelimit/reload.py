"""Reload the envoyproxy/ratelimit config while serving (upstream's runtime watcher).

Upstream watches its runtime directory and swaps in a config that loads; one that does not is
logged and counted (`config_load_error`) and the config in force stays. `ConfigWatcher` does
the same for the file or directory `GATEKEEPER_RATELIMIT_CONFIG` names, by polling: every
`interval_s` it lists the YAML files (`config_files`) with their size, mtime and inode (in a
worker thread: no file system call on the event loop), and when that changed, or a reload was
requested (`request_reload`, e.g. on a `<prefix>:invalidate` message), it reads, parses and
indexes the files in a worker thread, then installs the result on the event loop with one
reference assignment (`RateLimitService.install`). Polling needs no dependency and works on
every file system and on Kubernetes ConfigMap mounts (their atomic `..data` swap changes the
files' inodes).

A config that fails to load keeps the one in force: the error (every issue, file and line) is
logged, `failures` grows and `valid` turns False until a load succeeds. A load that failed
while the files were still changing under it is not reported: the next poll tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from gatekeeper.clock import Clock
from gatekeeper.config.errors import ConfigError
from gatekeeper.ratelimit.config import config_files, load_ratelimit_config
from gatekeeper.ratelimit.matcher import Matcher
from gatekeeper.ratelimit.service import RateLimitService

__all__ = ["ConfigWatcher", "Fingerprint", "fingerprint"]

log = logging.getLogger(__name__)

# (file, size, mtime ns, inode) of every config file, or the error that hid them
Fingerprint = tuple[tuple[str, int, int, int], ...] | str


def fingerprint(path: str | os.PathLike[str]) -> Fingerprint:
    """What identifies the files' contents without reading them. Blocking: call off the loop."""
    try:
        found = []
        for file in config_files(path):
            st = file.stat()
            found.append((str(file), st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(found)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


class ConfigWatcher:
    """A supervised loop (`run`, `run_once`, `stop`) that reloads a `RateLimitService`'s config.

    `seen`: the fingerprint of the files the service's config was loaded from (take it before
    loading, so a change made meanwhile is not missed); None = unknown, the first `run_once`
    reloads. `loaded_at`: when that config was loaded (seconds since the epoch).
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        service: RateLimitService,
        clock: Clock,
        seen: Fingerprint | None = None,
        loaded_at: float | None = None,
        interval_s: float = 0.5,
        merge_domains: bool = False,
    ) -> None:
        self._path = Path(path)
        self._service = service
        self._clock = clock
        self._seen = seen
        self._interval_s = interval_s
        self._merge_domains = merge_domains
        self._wake = asyncio.Event()
        self._forced = False
        self._stopping = False
        self.reloads = 0  # configs installed after the first
        self.failures = 0  # loads rejected (the config in force stayed)
        self.valid = True  # False while the files on disk do not load
        self.loaded_at = clock.now().timestamp() if loaded_at is None else loaded_at
        self.last_error: str | None = None

    def request_reload(self) -> None:
        """Reload on the next `run_once` even if no file seems changed (wakes `run` now)."""
        self._forced = True
        self._wake.set()

    async def run_once(self) -> bool:
        """Reload if the files changed or a reload was requested; True when a new config was
        installed. A config that fails to load is logged and counted, never raised."""
        forced, self._forced = self._forced, False
        before = await asyncio.to_thread(fingerprint, self._path)
        if before == self._seen and not forced:
            return False
        try:
            matcher = await asyncio.to_thread(self._load)
        except ConfigError as exc:
            after = await asyncio.to_thread(fingerprint, self._path)
            if after != before:  # caught mid-write: look again next time
                return False
            self._seen = before
            self._reject(str(exc))
            return False
        self._seen = before
        self._service.install(matcher)
        self.reloads += 1
        self.valid = True
        self.last_error = None
        self.loaded_at = self._clock.now().timestamp()
        domains = ", ".join(d.domain for d in matcher.config.domains) or "none"
        log.info("rate limit config reloaded from %s (domains: %s)", self._path, domains)
        return True

    def _load(self) -> Matcher:
        """Read, parse and index the config (blocking: runs in a worker thread)."""
        config = load_ratelimit_config(self._path, merge_domains=self._merge_domains)
        return self._service.compile(config)

    def _reject(self, error: str) -> None:
        self.failures += 1
        self.valid = False
        self.last_error = error
        log.error("rate limit config reload rejected, keeping the config in force:\n%s", error)

    async def run(self) -> None:
        """Poll every `interval_s` (sooner after `request_reload`) until `stop()`."""
        while not self._stopping:
            await self.run_once()
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
