"""RESP2 commands as bytes, and Redis error replies as the StoreUnavailable callers expect.

Used by the auto-pipelining path (autopipeline.py); replies are parsed by hiredis.Reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gatekeeper.errors import StoreUnavailable

__all__ = [
    "ErrorReply",
    "bulk_strings",
    "encode_command",
    "error_to_exception",
    "evalsha_prefix",
    "reply_text",
]


class ErrorReply(Exception):
    """A Redis error reply (`-ERR ...`), handed back by hiredis as a value, never raised."""


# Error codes redis-py maps to its ConnectionError family (worth retrying / failing open);
# every other error reply is a RedisError there, i.e. a non-transient StoreUnavailable.
_TRANSIENT_CODES = frozenset({"LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "WRONGPASS"})
_TRANSIENT_MESSAGES = ("ERR max number of clients reached", "NOAUTH", "ERR invalid password")


def reply_text(value: bytes | str) -> str:
    """A string reply as hiredis (bytes) or a decoding client (str) gives it."""
    return value.decode() if isinstance(value, bytes) else value


def bulk_strings(values: Iterable[str | bytes]) -> bytes:
    """Strings (UTF-8) or bytes as consecutive RESP bulk strings (the array header excluded)."""
    parts = []
    for value in values:
        raw = value.encode() if isinstance(value, str) else value
        parts.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(parts)


def encode_command(args: Sequence[bytes | str | int]) -> bytes:
    """One command as a RESP array of bulk strings (str is UTF-8, int in decimal)."""
    parts = [b"*%d\r\n" % len(args)]
    for value in args:  # one loop, no call per value: a first seed encodes ~2 million
        if isinstance(value, str):
            value = value.encode()
        elif isinstance(value, int):
            value = b"%d" % value
        parts.append(b"$%d\r\n%b\r\n" % (len(value), value))
    return b"".join(parts)


def evalsha_prefix(sha: str) -> bytes:
    """`EVALSHA <sha>` as the first two bulk strings of a command (the array header excluded)."""
    return bulk_strings(("EVALSHA", sha))


def error_to_exception(reply: ErrorReply, what: str) -> StoreUnavailable:
    """The exception redis_store.py raised for the same error reply through redis-py."""
    message = str(reply)
    code = message.split(" ", 1)[0]
    if code in _TRANSIENT_CODES or message.startswith(_TRANSIENT_MESSAGES):
        return StoreUnavailable(f"redis unavailable: {message}")
    return StoreUnavailable(f"redis error in {what}: {message}", transient=False)
