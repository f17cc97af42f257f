"""Raw RESP over a socket: the "raw EVALSHA" baseline with no client library in the way.

- `capture_evalsha`: reads Redis `MONITOR` while the engine decides once, and returns the exact
  EVALSHA (script SHA, KEYS, ARGV) it sent — whatever client the engine uses.
- `drive`: replays one pre-encoded command from `connections` sockets, unpipelined (one in flight
  per socket) or in batches of `batch` (one write, `batch` replies), for `seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import hiredis

__all__ = [
    "DriveResult",
    "call",
    "command_bytes",
    "drive",
    "open_connection",
    "parse_monitor_line",
    "reply_end",
]


def command_bytes(args: Sequence[str | bytes]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def reply_end(buf: bytes | bytearray, pos: int = 0) -> int:
    """Index just past the RESP reply starting at `pos`, or -1 if `buf` holds only part of it."""
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return -1
    kind = buf[pos : pos + 1]
    if kind in (b"+", b"-", b":", b",", b"#", b"_"):
        return line_end + 2
    n = int(buf[pos + 1 : line_end])
    if kind == b"$":
        end = line_end + 2 + max(n, 0) + (2 if n >= 0 else 0)
        return end if n < 0 or end <= len(buf) else -1
    if kind in (b"*", b"%", b"~"):
        count = n * 2 if kind == b"%" else n
        at = line_end + 2
        for _ in range(max(count, 0)):
            at = reply_end(buf, at)
            if at < 0:
                return -1
        return at
    raise ValueError(f"unexpected RESP type {kind!r}")


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


def parse_monitor_line(line: str) -> tuple[str, list[str]] | None:
    """(client, args) of one MONITOR line `+<ts> [<db> <client>] "arg" "arg" ...`.

    Arguments are unescaped as Redis escapes them (sdscatrepr: \\n, \\xHH, ...). None for a
    line that is not a command (the `+OK` answering MONITOR itself).
    """
    start = line.find("[")
    stop = line.find("]", start)
    if start < 0 or stop < 0:
        return None
    client = line[start + 1 : stop].split(" ", 1)[-1]
    args: list[str] = []
    i, text = stop + 1, line
    while i < len(text):
        if text[i] != '"':
            i += 1
            continue
        i += 1
        out: list[str] = []
        while text[i] != '"':
            ch = text[i]
            if ch == "\\":
                nxt = text[i + 1]
                if nxt == "x":
                    out.append(chr(int(text[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                out.append(_ESCAPES.get(nxt, nxt))
                i += 2
                continue
            out.append(ch)
            i += 1
        args.append("".join(out))
        i += 1
    return client, args


async def open_connection(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection to a redis:// (host, port, db) or unix:// URL."""
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        reader, writer = await asyncio.open_unix_connection(parsed.path)
    else:
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port or 6379)
    if parsed.password:
        await call(reader, writer, ["AUTH", parsed.password])
    return reader, writer


async def call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, args: Sequence[str | bytes]
) -> bytes:
    """One command on a raw connection; its whole reply as RESP bytes."""
    writer.write(command_bytes(args))
    buf = bytearray()
    while (end := reply_end(buf)) < 0:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        buf += chunk
    return bytes(buf[:end])


async def capture_evalsha(url: str, act: Callable[[], Awaitable[object]]) -> list[bytes]:
    """The arguments of the first EVALSHA a client sends while `act` runs (via MONITOR), byte
    for byte (MONITOR escapes every non-printable byte as \\xHH: latin-1 maps them back)."""
    reader, writer = await open_connection(url)
    try:
        writer.write(command_bytes(["MONITOR"]))
        await reader.readline()  # +OK
        await act()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(reader.readline(), timeout=10)
            found = parse_monitor_line(raw.decode("latin-1").rstrip("\r\n"))
            if found and found[0] != "lua" and found[1] and found[1][0].lower() == "evalsha":
                return [arg.encode("latin-1") for arg in found[1]]
        raise RuntimeError("no EVALSHA seen on MONITOR")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass(frozen=True, slots=True)
class DriveResult:
    commands: int
    seconds: float
    latencies_ns: list[int]  # per round trip: one command, or one batch when batched

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0


class FreshIds:
    """`command` with its token `vary` (a decision id) replaced by a new one of the same
    length on every call, so each replay is a decision of its own: Redis refuses an id it has
    recorded already (the decision journal), and replaying one would time the refusal."""

    def __init__(self, command: bytes, vary: bytes) -> None:
        if command.count(vary) < 1:
            raise ValueError("the token to vary is not in the command")
        self._parts = command.split(vary)
        self._width = len(vary)
        self._next = 0

    def __call__(self, n: int) -> bytes:
        """`n` calls, each with a fresh id (hex, as wide as the one replaced)."""
        out = []
        for _ in range(n):
            self._next += 1
            out.append(b"%0*x" % (self._width, self._next))
        return b"".join(token.join(self._parts) for token in out)


async def drive(
    url: str,
    command: bytes,
    *,
    connections: int,
    batch: int,
    seconds: float,
    vary: bytes | None = None,
) -> DriveResult:
    """Send `command` flat out for `seconds` (`vary`: a token of it replaced by a fresh one
    per call, FreshIds); errors in replies are not inspected here (the caller checks one
    reply first)."""
    fresh = FreshIds(command, vary) if vary is not None else None
    payload = command * batch
    latencies: list[int] = []
    done = 0
    stop_at = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        reader, writer = await open_connection(url)
        replies = hiredis.Reader()  # replies counted by a C parser: the driver is not the limit
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter_ns()
                writer.write(payload if fresh is None else fresh(batch))
                got = 0
                while got < batch:
                    if replies.gets() is not False:
                        got += 1
                        continue
                    chunk = await reader.read(262144)
                    if not chunk:
                        raise ConnectionError("redis closed the connection")
                    replies.feed(chunk)
                latencies.append(time.perf_counter_ns() - t0)
                done += batch
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return DriveResult(done, time.perf_counter() - start, latencies)
