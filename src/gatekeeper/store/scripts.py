"""Lua scripts shipped as package files, run by SHA, reloaded after NOSCRIPT (flush, failover)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

__all__ = ["LuaScript", "load_script"]

_LIBRARY = "common.lua"


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha: str

    async def run(self, redis: Redis, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """EVALSHA; on NOSCRIPT load the source once and retry (atomicity is per call)."""
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)


def load_script(name: str) -> LuaScript:
    """Read `gatekeeper/lua/<name>.lua` with the shared library prepended."""
    folder = resources.files("gatekeeper").joinpath("lua")
    source = (
        folder.joinpath(_LIBRARY).read_text() + "\n" + folder.joinpath(f"{name}.lua").read_text()
    )
    return LuaScript(name=name, source=source, sha=hashlib.sha1(source.encode()).hexdigest())
