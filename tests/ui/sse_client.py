"""A minimal EventSource for tests: parses `text/event-stream` from an aiohttp response."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class Message:
    event: str
    data: str
    id: str | None = None

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.data)  # type: ignore[no-any-return]


class EventReader:
    """Messages (and comment lines, counted) of one open stream."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next(self, timeout: float = 5.0) -> Message:
        """The next message; raises TimeoutError, or EOFError when the server ends the stream."""
        event, data, last_id = "message", [], None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("stream ended")
                line = raw.decode().rstrip("\n").rstrip("\r")
                if not line:
                    if data:
                        return Message(event, "\n".join(data), last_id)
                    event = "message"
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    last_id = value
                elif name == "retry":
                    self.retry = int(value)

    async def next_of(self, event: str, timeout: float = 5.0) -> Message:
        """The next message named `event` (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next(timeout)
                if message.event == event:
                    return message
