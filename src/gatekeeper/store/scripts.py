"""Lua scripts shipped as package files, run by SHA, reloaded after NOSCRIPT (flush, failover)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from gatekeeper.store.autopipeline import Pipelined
from gatekeeper.store.resp import (
    ErrorReply,
    bulk_strings,
    encode_command,
    error_to_exception,
    evalsha_prefix,
)

__all__ = ["LuaScript", "load_script"]

_LIBRARY = "common.lua"


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha: str
    _head: bytes = field(default=b"", repr=False, compare=False)

    async def run(
        self, redis: Redis, keys: Sequence[str], args: Sequence[str | bytes | int]
    ) -> Any:
        """EVALSHA; on NOSCRIPT load the source once and retry (atomicity is per call)."""
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)

    def encode(
        self,
        keys: Sequence[str],
        args: Sequence[str | bytes],
        *,
        tail: bytes = b"",
        n_tail: int = 0,
    ) -> bytes:
        """The EVALSHA command as RESP bytes (for AutoPipeline.execute). The last `n_tail`
        keys may come pre-encoded as `tail` (bulk_strings of them)."""
        n = len(keys)
        head = self._head or evalsha_prefix(self.sha)
        return b"".join(
            (
                b"*%d\r\n" % (n + len(args) + 3),
                head,
                b"$%d\r\n%d\r\n" % (len(str(n)), n),
                bulk_strings(keys[: n - n_tail] if n_tail else keys),
                tail,
                bulk_strings(args),
            )
        )

    async def run_pipelined(
        self,
        pipe: Pipelined,
        keys: Sequence[str],
        args: Sequence[str | bytes],
        *,
        tail: bytes = b"",
        n_tail: int = 0,
    ) -> Any:
        """EVALSHA through the auto-pipeline; NOSCRIPT → SCRIPT LOAD and one retry (NOSCRIPT
        means the call did not run). On a Cluster the call, the load and the retry go to the
        primary of the first key's slot, so a script is loaded on each primary it runs on.

        Raises StoreUnavailable exactly as redis_store.py maps redis-py's errors.
        """
        data = self.encode(keys, args, tail=tail, n_tail=n_tail)
        key = keys[0] if keys else None
        reply = await pipe.execute(data, key)
        if isinstance(reply, ErrorReply) and str(reply).startswith("NOSCRIPT"):
            await self._load_on(pipe, key)
            reply = await pipe.execute(data, key)
        if isinstance(reply, ErrorReply):
            raise error_to_exception(reply, self.name)
        return reply

    async def _load_on(self, pipe: Pipelined, key: str | None) -> None:
        """SCRIPT LOAD on the node of `key` (after NOSCRIPT: the call did not run there)."""
        loaded = await pipe.execute(encode_command(("SCRIPT", "LOAD", self.source)), key)
        if isinstance(loaded, ErrorReply):
            raise error_to_exception(loaded, self.name)

    async def run_pipelined_then(
        self,
        pipe: Pipelined,
        keys: Sequence[str],
        args: Sequence[str | bytes],
        then: bytes,
        *,
        tail: bytes = b"",
        n_tail: int = 0,
    ) -> tuple[Any, Any]:
        """`run_pipelined` with the encoded command `then` right behind the call on its
        connection (Redis WAIT); the call's reply and `then`'s (None when the call was
        redirected on a Cluster: see ClusterAutoPipeline.execute_then)."""
        data = self.encode(keys, args, tail=tail, n_tail=n_tail)
        key = keys[0] if keys else None
        reply, after = await pipe.execute_then(data, then, key)
        if isinstance(reply, ErrorReply) and str(reply).startswith("NOSCRIPT"):
            await self._load_on(pipe, key)
            reply, after = await pipe.execute_then(data, then, key)
        if isinstance(reply, ErrorReply):
            raise error_to_exception(reply, self.name)
        return reply, after


def load_script(name: str, *, library: bool = True) -> LuaScript:
    """Read `gatekeeper/lua/<name>.lua`, with the shared library prepended unless `library`
    is False (a script that takes plain ARGV, not one MessagePack array)."""
    folder = resources.files("gatekeeper").joinpath("lua")
    source = folder.joinpath(f"{name}.lua").read_text()
    if library:
        source = folder.joinpath(_LIBRARY).read_text() + "\n" + source
    sha = hashlib.sha1(source.encode()).hexdigest()
    return LuaScript(name=name, source=source, sha=sha, _head=evalsha_prefix(sha))
