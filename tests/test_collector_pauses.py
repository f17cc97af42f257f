"""The collector's passes on /metrics: each pass timed under its generation while installed,
the longest kept, nothing counted once removed."""

from __future__ import annotations

import gc

from gatekeeper.app_metrics import CollectorPauses
from gatekeeper.metrics import Registry
from tests.prometheus_text import parse, value

FULL = "gatekeeper_gc_pause_seconds_count"


def test_each_pass_is_timed_while_installed() -> None:
    registry = Registry()
    pauses = CollectorPauses(registry)
    before = parse(registry.render())
    assert value(before, FULL, generation="2") == 0
    assert value(before, "gatekeeper_gc_pause_max_seconds") == 0
    pauses.install()
    pauses.install()  # once only
    try:
        for _ in range(3):
            gc.collect()
        gc.collect(0)
    finally:
        pauses.remove()
    during = parse(registry.render())
    assert value(during, FULL, generation="2") == 3
    assert value(during, FULL, generation="0") >= 1
    longest = value(during, "gatekeeper_gc_pause_max_seconds")
    assert 0 < longest == pauses.longest
    assert value(during, "gatekeeper_gc_pause_seconds_sum", generation="2") <= 3 * longest
    gc.collect()
    assert value(parse(registry.render()), FULL, generation="2") == 3  # removed: not counted
