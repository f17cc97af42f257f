"""The dead-letter stream of a partition: entries the billing sink gave up on, with the reason.

An entry is copied to `KeySpace.dead_letter(p)` and acknowledged in one MULTI/EXEC (the usage
stream and its dead-letter stream share the `{p}` hash tag, so this works on Redis Cluster):
either both happen or neither, so an entry is never lost between the two.

Dead-letter entry fields: `reason`, `stream`, `entry_id`, `group`, `consumer`, `tries`,
`time_us`, then every original field as `f.<name>` (none for an entry deleted before billing).
The dead-letter stream is never trimmed by gatekeeper.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from gatekeeper.store.keys import KeySpace

__all__ = ["DeadLetter"]


class DeadLetter:
    def __init__(self, *, redis: Redis, keys: KeySpace, group: str, consumer: str) -> None:
        self._redis = redis
        self._keys = keys
        self._group = group
        self._consumer = consumer
        self._partition = {s: p for p, s in enumerate(keys.all_usage_streams())}

    def stream_for(self, usage_stream: str) -> str:
        return self._keys.dead_letter(self._partition[usage_stream])

    async def send(
        self,
        *,
        stream: str,
        entry_id: str,
        fields: Mapping[bytes, bytes] | None,
        reason: str,
        tries: int,
        now_us: int,
    ) -> None:
        """Copy the entry with its reason to the dead-letter stream and XACK it, atomically.

        Raises redis errors (nothing happened then; the entry stays pending).
        """
        record: dict[str | bytes, str | bytes] = {
            "reason": reason,
            "stream": stream,
            "entry_id": entry_id,
            "group": self._group,
            "consumer": self._consumer,
            "tries": str(tries),
            "time_us": str(now_us),
        }
        for name, value in (fields or {}).items():
            record[b"f." + (name if isinstance(name, bytes) else str(name).encode())] = value
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.stream_for(stream), record)  # type: ignore[arg-type]
            pipe.xack(stream, self._group, entry_id)
            await pipe.execute()
