"""State-tree internal nodes of the current tree that the store wrote or read lately, in memory and bounded.

Why: a block's state-tree update reads every node on the paths it rewrites (about 45,000 nodes for a
5,000-transaction block over a million keys), and in the 30-minute soak those point reads became the largest part
of a validator's time (docs/benchmarks.md, "Soak"): through the engine each costs a B-tree walk (LMDB) or filter,
index and data block lookups (RocksDB). The nodes most likely to be read next are the ones the last blocks wrote —
the tree's upper levels are rewritten by every block, the middle ones by most — so the store puts every internal
node it commits here, and every internal node it reads from the engine.

What is kept, and why only that (docs/benchmarks.md, "The garbage collector, and a node cache of the live tree"):

* **Internal nodes only.** A leaf is read at most once per written key, at the end of its walk (to split it or to
  replace it), while the ~log2(keys) internal nodes above it are read on every walk through them. Leaves also carry
  values of up to 1 MiB; an internal node is 81 bytes. So the budget goes to what is read most per byte.
* **Only the current tree's.** Each commit replaces about as many nodes as it writes (the ``stale`` references of
  :class:`qilian.state.StateCommit`); the next block's walk starts from the new root and can never reach them, so
  :meth:`NodeCache.discard_many` drops them at once. Before, they filled half of each generation. With them gone,
  the cache grows by the tree's *net* growth per block (about one internal node per new key) and holds the upper
  levels of the live tree whole: a walk misses only in its last few levels.

Why this is always correct: a node is stored under its *reference* ``version ‖ hash`` and the tree never rewrites
one (tree.py, "Node store"), so the bytes under a reference are the same in every view, snapshot or not; pruning
deletes references no retained root reaches, which no reader asks for (old heights are refused first), and a
cached copy of one would still be its true bytes. Dropping an entry can only cost a read. Only references are
cached: a root pointer (root hash → the latest reference of that root) can be rewritten, so it is always read from
the engine.

Bounded by estimated memory, two generations: entries go to the young one; when it reaches half the budget the
old one is dropped and the young one becomes old; a hit in the old one moves the entry back to the young one. So
what survives is what was written or read within about the last half budget, at O(1) per operation and with no
per-read bookkeeping. Shared by the store's threads without a lock: each dict operation is atomic, and a race can
only lose a cache entry (or miscount the estimate by one entry), never return wrong bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

NODE_CACHE_BYTES: Final = 128 * 1024 * 1024
"""Estimated memory the node cache may take, both generations together (see :data:`ENTRY_OVERHEAD_BYTES`)."""
ENTRY_OVERHEAD_BYTES: Final = 160
"""What one entry costs beyond its value's bytes: the 40-byte reference as a Python bytes object, the value's
object header and the dict slot (measured with tracemalloc: 239 bytes per entry of an 81-byte internal node on
CPython 3.11)."""
REF_BYTES: Final = 40
"""Length of a node reference (8-byte version ‖ 32-byte hash); other keys of the node table are not cached."""
INTERNAL_NODE_BYTES: Final = 81
"""An internal node's encoding: tag 0x01 ‖ left reference ‖ right reference (the only kind cached)."""


class NodeCache:
    """Reference → node bytes, bounded by :data:`NODE_CACHE_BYTES` (or ``budget_bytes``)."""

    __slots__ = ("_half", "_old", "_old_bytes", "_young", "_young_bytes")

    def __init__(self, budget_bytes: int = NODE_CACHE_BYTES):
        self._half = max(1, budget_bytes // 2)
        self._young: dict[bytes, bytes] = {}
        self._old: dict[bytes, bytes] = {}
        self._young_bytes = 0
        self._old_bytes = 0

    def get(self, ref: bytes) -> bytes | None:
        """The cached bytes of a node reference, or None (then read it from the engine and :meth:`add` it)."""
        node = self._young.get(ref)
        if node is None:
            node = self._old.get(ref)
            if node is not None:
                self.add(ref, node)
        return node

    def add(self, ref: bytes, node: bytes) -> None:
        """Remember an internal node just read or written; anything else is ignored (a root pointer: its value can
        change; a leaf: read once per written key, see the module's docstring)."""
        if len(ref) != REF_BYTES or len(node) != INTERNAL_NODE_BYTES or node[0] != 1:
            return
        self._young[ref] = node
        self._young_bytes += len(node) + ENTRY_OVERHEAD_BYTES
        if self._young_bytes >= self._half:
            self._old, self._old_bytes = self._young, self._young_bytes
            self._young, self._young_bytes = {}, 0

    def add_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """:meth:`add` for each (reference, node)."""
        for ref, node in items:
            self.add(ref, node)

    def discard_many(self, refs: Iterable[bytes]) -> None:
        """Forget these references: the nodes a commit replaced, which no walk from a later root reaches."""
        young, old = self._young, self._old
        for ref in refs:
            node = young.pop(ref, None)  # (an entry hit in the old generation is in both)
            if node is not None:
                self._young_bytes -= len(node) + ENTRY_OVERHEAD_BYTES
            node = old.pop(ref, None)
            if node is not None:
                self._old_bytes -= len(node) + ENTRY_OVERHEAD_BYTES
        # A generation flip on another thread mid-loop can make a count subtract an entry it no longer holds.
        self._young_bytes = max(0, self._young_bytes)
        self._old_bytes = max(0, self._old_bytes)

    def get_refs(self) -> set[bytes]:
        """Every reference held now (a copy) — for the tests' check that only the live tree is kept."""
        return set(self._young) | set(self._old)

    def get_size(self) -> tuple[int, int]:
        """(entries, estimated bytes) now held — for the metrics and the tests."""
        entries = len(self._young) + len(self._old)
        return entries, sum(len(v) + ENTRY_OVERHEAD_BYTES for d in (self._young, self._old) for v in d.values())

    def get_estimated_bytes(self) -> int:
        """Estimated memory held, at O(1) (an upper bound: an entry moved back from the old generation to the
        young one counts in both until the old one is dropped) — for the metrics."""
        return self._young_bytes + self._old_bytes

    def clear(self) -> None:
        """Forget everything (the store is being closed or replaced)."""
        self._young, self._old, self._young_bytes, self._old_bytes = {}, {}, 0, 0
