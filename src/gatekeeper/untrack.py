"""Immutable cached data taken out of the cyclic garbage collector's view.

A full pass of CPython's cyclic collector stops the event loop for every object it tracks: ~0.2
µs each in a fresh heap, up to ~0.9 µs in a serve process that has run a while (its objects
scattered over memory, each visit a cache miss). What a serving process caches per customer
(its compiled customer, the plan templates of its requests, their encoded counters) was ~17
tracked objects per customer, and 4,096 of each a 40–65 ms pause of every decision in flight.

That data is built of frozen dataclasses, tuples and dicts of them, immutable once built: it
cannot take part in a reference cycle, so reference counting alone frees it and the collector
would never find anything in it. `untrack` takes such a graph off the collector's lists, what
CPython itself does for tuples and dicts that hold only atoms (`PyObject_GC_UnTrack`), so the
pause no longer grows with what is cached.

What is untracked: `root` and what it references, transitively, among exact tuples, frozensets,
dicts, instances of frozen dataclasses and instances of the `also` classes. The walk does not
enter anything else (a store, a type, an enum member, a task: those can be part of a cycle), a
`stop` type, or an object already untracked (a part shared with what was walked before is
walked once). The one rule for callers: an `also` object (mutable) must never be given a
reference that leads back to itself, or that cycle is never collected. A dict untracked here is
tracked again by CPython as soon as something trackable is put in it. On an interpreter without
`PyObject_GC_UnTrack` (not CPython) nothing is done.
"""

from __future__ import annotations

import ctypes
import functools
import gc
from collections.abc import Callable

__all__ = ["untrack"]

_CONTAINERS: frozenset[type] = frozenset({tuple, frozenset, dict})
"""Built-in types whose deallocation copes with an untracked object (PyObject_GC_UnTrack, not
the macro that assumes a tracked one: a read-only mapping view's, for one, would crash)."""
_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class statement's; deallocated by subtype_dealloc


@functools.cache
def _gc_untrack() -> Callable[[object], None] | None:
    """CPython's PyObject_GC_UnTrack (safe on an object already untracked), or None."""
    api = getattr(ctypes, "pythonapi", None)
    if api is None or not hasattr(api, "PyObject_GC_UnTrack"):
        return None
    prototype = ctypes.PYFUNCTYPE(None, ctypes.py_object)  # called holding the GIL
    return prototype(("PyObject_GC_UnTrack", api))


def _immutable(cls: type) -> bool:
    if cls in _CONTAINERS:
        return True
    params = cls.__dict__.get("__dataclass_params__")  # its own: a dataclass, not a subclass
    return params is not None and bool(params.frozen) and bool(cls.__flags__ & _HEAP_TYPE)


def untrack(root: object, *, also: tuple[type, ...] = (), stop: tuple[type, ...] = ()) -> int:
    """Take `root` and the immutable data it references off the collector's lists (module
    doc); returns how many objects were."""
    gc_untrack = _gc_untrack()
    if gc_untrack is None:
        return 0
    is_tracked = gc.is_tracked
    referents = gc.get_referents
    pending = [root]
    done = 0
    while pending:
        obj = pending.pop()
        if not is_tracked(obj):
            continue
        cls = type(obj)
        if cls in stop or not (cls in also or _immutable(cls)):
            continue
        gc_untrack(obj)
        done += 1
        pending.extend(referents(obj))
    return done
