"""The directory's bounded map (directory/cache.py) against a model: bounded, faithful, the most
recent entries kept; and a map of atoms the cyclic collector never tracks."""

from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.directory.cache import Lru

_KEYS = st.integers(0, 60).map(lambda i: f"k{i}")
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _KEYS, st.binary(min_size=1, max_size=4)),
        st.tuples(st.just("get"), _KEYS, st.none()),
        st.tuples(st.just("discard"), _KEYS, st.none()),
        st.tuples(st.just("clear"), st.none(), st.none()),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 40), ops=_OPS)
def test_bounded_faithful_and_keeps_the_most_recent(
    capacity: int, ops: list[tuple[str, str | None, bytes | None]]
) -> None:
    lru: Lru[str, bytes] = Lru(capacity)
    last: dict[str, bytes] = {}  # the last value put of every key not discarded since
    recent: list[str] = []  # keys put or found, most recent last
    inserted = 0
    for op, key, value in ops:
        if op == "put":
            assert key is not None and value is not None
            inserted += key not in lru
            lru.put(key, value)
            last[key] = value
            recent.append(key)
        elif op == "get":
            assert key is not None
            found = lru.get(key)
            assert found is None or found == last.get(key)
            if found is not None:
                recent.append(key)
        elif op == "discard":
            assert key is not None
            lru.discard(key)
            last.pop(key, None)
            recent = [k for k in recent if k != key]
            assert key not in lru
        else:
            lru.clear()
            last.clear()
            recent = []
        held = {k for k in last if lru.peek(k) is not None}
        assert len(lru) == len(held) <= capacity
        assert all(lru.peek(k) == last[k] for k in held)
        newest = list(dict.fromkeys(reversed(recent)))[: max(1, capacity // 8)]
        assert set(newest) <= held, (newest, held)
    assert lru.evictions <= inserted


def test_every_slot_is_used_before_anything_is_dropped() -> None:
    lru: Lru[str, bytes] = Lru(100)
    for i in range(100):
        lru.put(f"k{i}", b"v")
    assert len(lru) == 100 and lru.evictions == 0
    lru.put("k100", b"v")
    assert len(lru) == 100 and lru.evictions == 1 and lru.peek("k100") == b"v"


def test_a_hot_key_survives_a_scan_of_cold_ones() -> None:
    lru: Lru[str, bytes] = Lru(80)
    lru.put("hot", b"h")
    for i in range(10_000):
        lru.put(f"cold{i}", b"c")
        if i % 50 == 0:
            assert lru.get("hot") == b"h"
    assert lru.get("hot") == b"h" and len(lru) == 80


def test_a_map_of_atoms_is_never_tracked_by_the_collector() -> None:
    lru: Lru[str, bytes | str | float] = Lru(1_000)
    for i in range(5_000):
        lru.put(f"c{i}", b"record" if i % 3 == 0 else f"owner{i}" if i % 3 else float(i))
        lru.get(f"c{i // 2}")
    segments = [o for o in gc.get_referents(lru) if isinstance(o, list)]
    dicts = [d for s in segments for d in s]
    assert dicts and sum(len(d) for d in dicts) == len(lru) == 1_000
    assert not any(gc.is_tracked(d) for d in dicts)
