"""Time the node's process spends in Python's cyclic garbage collector, by generation (``/metrics``).

Why: a collection of the oldest generation walks every container object the process holds — the mempool's
transactions, the caches, the consensus state — and stops every thread while it does. Its cost grows with the
heap, so a node can slow down over hours with no line of its own code getting slower; a profiler then charges
the pauses to whatever line happened to allocate. This makes the pauses visible as their own figure
(``qilian_gc_seconds_total{generation}``), which ``qilian bench soak`` reports per minute.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, Final

GENERATIONS: Final = 3
"""CPython's collector has three generations (0, 1, 2)."""
NODE_GC_THRESHOLDS: Final = (50_000, 50, 100)
"""The node's collector thresholds (CPython's default is 700, 10, 10): a young collection after 50,000 net new
container objects, a middle one every 50 young ones, and the whole heap considered every 100 middle ones (CPython
then also waits until a quarter of the heap is new since the last whole-heap pass). Why so far from the default
(docs/benchmarks.md, "The garbage collector"): with the default, everything a block holds while it executes — the
transactions, receipts, writes, events — outlives two young collections and is promoted to the oldest generation,
so a soak node ran a whole-heap pass every ~2 s, each ~0.3 s with every thread stopped: a third of its CPU, growing
with the heap. With these, block-lifetime objects die young, and what they cost is bounded by the young
generations' size, not the heap's."""


class GcTimer:
    """Accumulates the wall time of each collection, per generation, from :data:`gc.callbacks`."""

    __slots__ = ("_lock", "_started", "collected", "collections", "seconds")

    def __init__(self) -> None:
        self.seconds = [0.0] * GENERATIONS
        """Seconds spent collecting, per generation, since the timer was installed."""
        self.collections = [0] * GENERATIONS
        """Collections run, per generation."""
        self.collected = [0] * GENERATIONS
        """Unreachable objects freed, per generation."""
        self._started: float | None = None
        self._lock = threading.Lock()

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """The :data:`gc.callbacks` hook: called with "start" and "stop" around each collection (under the GIL,
        by whichever thread triggered it; collections never overlap)."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        started, self._started = self._started, None
        if started is None:
            return
        generation = int(info.get("generation", 0))
        if 0 <= generation < GENERATIONS:
            with self._lock:
                self.seconds[generation] += time.perf_counter() - started
                self.collections[generation] += 1
                self.collected[generation] += int(info.get("collected", 0))

    def get_totals(self) -> tuple[list[float], list[int]]:
        """(seconds, collections) per generation, copied under the lock."""
        with self._lock:
            return list(self.seconds), list(self.collections)


_TIMER: GcTimer | None = None


def get_gc_timer() -> GcTimer:
    """The process's one timer, installed into :data:`gc.callbacks` on first use."""
    global _TIMER
    if _TIMER is None:
        _TIMER = GcTimer()
        gc.callbacks.append(_TIMER.on_gc)
    return _TIMER


def process_configure_node_gc() -> None:
    """Set :data:`NODE_GC_THRESHOLDS`, move everything allocated so far (modules, configuration, the loaded
    chain state) out of the collector's reach (:func:`gc.freeze`: objects the process keeps for its lifetime need
    never be scanned; ones freed later are still freed by reference counting), and install the timer."""
    get_gc_timer()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*NODE_GC_THRESHOLDS)
