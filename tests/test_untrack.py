"""Immutable cached data off the cyclic collector's lists (gatekeeper/untrack.py): what is
untracked, what is left alone, and that reference counting still frees all of it."""

from __future__ import annotations

import enum
import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

from gatekeeper.untrack import untrack


class Colour(enum.Enum):
    RED = "red"


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Leaf:
    name: str
    colour: Colour = Colour.RED


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Node:
    leaves: tuple[Leaf, ...]
    by_name: dict[str, Leaf]
    extra: object = None
    view: object = None


@dataclass(slots=True)
class Mutable:  # not frozen: left alone
    value: object = None


class Memo:
    __slots__ = ("__weakref__", "value")

    def __init__(self, value: object) -> None:
        self.value = value


class Stop:
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


@contextmanager
def _no_collector() -> Iterator[None]:
    """Only reference counting frees anything inside."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _node(extra: object = None, view: object = None) -> Node:
    leaves = tuple(Leaf(f"l{i}") for i in range(3))
    return Node(leaves, {leaf.name: leaf for leaf in leaves}, extra, view)


def test_a_frozen_graph_is_untracked_and_nothing_else() -> None:
    shared = [1, 2]  # a list: mutable, left tracked
    node = _node(extra=(Mutable(shared), "x"), view=MappingProxyType({"a": [1]}))
    done = untrack(node)
    assert not gc.is_tracked(node)
    assert not gc.is_tracked(node.leaves) and not gc.is_tracked(node.by_name)
    assert all(not gc.is_tracked(leaf) for leaf in node.leaves)
    assert not gc.is_tracked(node.extra)  # the tuple
    mutable = node.extra[0]
    assert gc.is_tracked(mutable) and gc.is_tracked(shared)
    assert gc.is_tracked(node.view)  # a read-only view's dealloc assumes it is tracked
    assert gc.is_tracked(Colour.RED)
    assert done == 1 + 1 + 1 + 3 + 1  # node, tuple of leaves, dict, 3 leaves, extra tuple
    assert untrack(node) == 0  # already done


def test_also_types_are_entered_and_stop_types_are_not() -> None:
    inner = _node()
    memo = Memo(inner)
    assert untrack(memo) == 0  # not immutable, not named
    assert gc.is_tracked(memo) and gc.is_tracked(inner)

    assert untrack(Memo(Stop(inner)), also=(Memo,)) == 1  # Stop is neither: not entered
    assert gc.is_tracked(inner)

    blocked = _node(extra=inner)
    untrack(blocked, stop=(Node,))
    assert gc.is_tracked(blocked)
    untrack(memo, also=(Memo,))
    assert not gc.is_tracked(memo) and not gc.is_tracked(inner)


def test_what_is_untracked_is_still_freed_by_reference_counting() -> None:
    with _no_collector():
        node = _node(extra=Memo(None))
        memo = node.extra
        untrack(node, also=(Memo,))
        refs = [weakref.ref(node), weakref.ref(memo), *(weakref.ref(leaf) for leaf in node.leaves)]
        assert all(r() is not None for r in refs)
        del node, memo
        assert all(r() is None for r in refs)


def test_a_collection_walks_none_of_what_is_untracked() -> None:
    gc.collect()
    before = len(gc.get_objects())
    held = [_node() for _ in range(2_000)]
    assert len(gc.get_objects()) - before >= 2_000 * 5
    for node in held:
        untrack(node)
    gc.collect()
    assert len(gc.get_objects()) - before < 10  # the list that holds them
    del held
