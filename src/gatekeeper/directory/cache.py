"""A bounded least-recently-used map: what a process holds of the directory never grows with
the number of customers, only up to the size it was given.

The entries live in a few plain dicts, segments of at most capacity / 8 entries, the newest
last. A hit in an older segment moves the entry into the newest; a put past the capacity drops
an entry of the oldest segment: one not asked for since that segment was the newest. A
segmented LRU, not an exact one, for the cyclic garbage collector's sake: an OrderedDict is
tracked by the collector and a full collection walks every entry it holds (~14 ms for each
100,000, an event loop stall), while a plain dict whose keys and values are all atoms (str,
bytes, int, float, None) is never tracked at all. Holding only atoms is the owner's part
(directory/live.py); a map of other values works the same, tracked.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Lru"]

K = TypeVar("K")
V = TypeVar("V")

_SEGMENTS = 8


class Lru(Generic[K, V]):
    """At most `capacity` entries; a hit makes an entry one of the most recent, a put past
    the capacity drops one of the least recent (`evictions` counts those). Not thread-safe (one
    event loop owns it). Hits and misses are the owner's to count: it knows what one lookup
    is."""

    __slots__ = ("_segment_size", "_segments", "_size", "capacity", "evictions")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._segment_size = -(-capacity // _SEGMENTS)
        self._segments: list[dict[K, V]] = [{}]  # the oldest first, the newest last
        self._size = 0
        self.evictions = 0

    def get(self, key: K) -> V | None:
        segments = self._segments
        value = segments[-1].get(key)
        if value is not None or len(segments) == 1:
            return value
        for older in reversed(segments[:-1]):
            value = older.pop(key, None)
            if value is not None:
                self._size -= 1
                self._insert(key, value)
                return value
        return None

    def peek(self, key: K) -> V | None:
        """The value, without making it the most recent (and without counting)."""
        for segment in reversed(self._segments):
            value = segment.get(key)
            if value is not None:
                return value
        return None

    def put(self, key: K, value: V) -> None:
        segments = self._segments
        if key in segments[-1]:
            segments[-1][key] = value
            return
        for older in segments[:-1]:
            if older.pop(key, None) is not None:
                self._size -= 1
        self._insert(key, value)

    def _insert(self, key: K, value: V) -> None:
        segments = self._segments
        if self._size >= self.capacity:
            while not segments[0]:
                del segments[0]
            segments[0].popitem()  # the last one in: order inside a segment does not matter
            self._size -= 1
            self.evictions += 1
        if len(segments[-1]) >= self._segment_size:
            self._rotate()
        self._segments[-1][key] = value
        self._size += 1

    def _rotate(self) -> None:
        """A new newest segment; segments emptied by hits and evictions go, and a trickle of
        old ones is merged, so a handful of dicts hold everything."""
        segments = [s for s in self._segments if s]
        while len(segments) >= 2 * _SEGMENTS:
            segments[1].update(segments[0])
            del segments[0]
        segments.append({})
        self._segments = segments

    def discard(self, key: K) -> None:
        for segment in self._segments:
            if segment.pop(key, None) is not None:
                self._size -= 1

    def clear(self) -> None:
        self._segments = [{}]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        return any(key in s for s in self._segments)
