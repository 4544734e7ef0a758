"""The node's garbage-collector settings and the timer behind ``qilian_gc_seconds`` in /metrics."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from qilian.node.gcstats import NODE_GC_THRESHOLDS, GcTimer


def test_the_timer_counts_each_collection_by_generation() -> None:
    timer = GcTimer()
    gc.callbacks.append(timer.on_gc)
    try:
        cycle: list[object] = []
        cycle.append(cycle)  # garbage only the cyclic collector can free
        del cycle
        gc.collect(2)
        gc.collect(0)
    finally:
        gc.callbacks.remove(timer.on_gc)
    seconds, collections = timer.get_totals()
    assert collections[2] >= 1 and collections[0] >= 1
    assert seconds[2] > 0.0 and timer.collected[2] >= 1


def test_a_stop_without_a_start_is_ignored() -> None:
    timer = GcTimer()
    timer.on_gc("stop", {"generation": 2, "collected": 5})
    assert timer.get_totals() == ([0.0, 0.0, 0.0], [0, 0, 0])


def test_the_node_configuration_sets_the_thresholds_and_freezes_what_start_up_loaded() -> None:
    """Run in a fresh interpreter: the settings are process-wide, so they are not applied to the test runner."""
    code = ("import gc, json\n"
            "from qilian.node.gcstats import process_configure_node_gc, get_gc_timer\n"
            "process_configure_node_gc()\n"
            "print(json.dumps([gc.get_threshold(), gc.get_freeze_count(), get_gc_timer().get_totals()[1]]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    thresholds, frozen, collections = json.loads(out.stdout)
    assert tuple(thresholds) == NODE_GC_THRESHOLDS != gc.get_threshold()
    assert frozen > 1000  # the modules and objects loaded so far are out of the collector's reach
    assert collections[2] >= 1  # the full collection before freezing was timed
