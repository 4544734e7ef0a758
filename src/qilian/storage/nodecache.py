"""State-tree internal nodes of the current tree that the store wrote or read lately, in memory and bounded.

Why: a block's state-tree update reads every node on the paths it rewrites (about 45,000 nodes for a
5,000-transaction block over a million keys), and in the 30-minute soak those point reads became the largest part
of a validator's time (docs/benchmarks.md, "Soak"): through the engine each costs a B-tree walk (LMDB) or filter,
index and data block lookups (RocksDB). The nodes most likely to be read next are the ones the last blocks wrote —
the tree's upper levels are rewritten by every block, the middle ones by most — so the store puts every internal
node it commits here, and every internal node it reads from the engine.

What is kept, and why only that (docs/benchmarks.md, "The garbage collector, and a node cache of the live tree"):

* **Internal nodes only.** A commit does not read leaves at all (a leaf's parent names the leaf's path, which is
  all a commit needs of it: tree.py, "Encodings"), while the ~log2(keys) internal nodes above it are read on every
  walk through them. Leaves also carry values of up to 1 MiB; an internal node is 81 to 145 bytes. So the budget
  goes to what is read most per byte.
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
only lose a cache entry, never return wrong bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import repeat
from typing import Final

NODE_CACHE_BYTES: Final = 2 * 1024 * 1024 * 1024
"""Estimated memory the node cache may take by default, both generations together (see
:data:`ENTRY_OVERHEAD_BYTES`; ``[store] node_cache_mib`` sets it per node). It is a bound, not an allocation: the
cache holds only the live tree's internal nodes, about 1.4 per state key (random keys). The whole tree stays in
memory while it fits in one generation (half the budget: ~4 million nodes, ~3 million keys at 2 GiB), and most of
it up to twice that (a rotation drops only what no block touched since the one before). Why that much
(docs/benchmarks.md, "The whole tree in memory, and CPU time per phase" and "Leaf paths in the parent"): with keys
at random paths every block's walks reach the whole tree, so whatever the cache misses is read from the engine in
every block. Offline at 1.05 million keys, 128 MiB (the top ~19 levels) cost 375 ms of tree time and 19,636
engine reads per 5,000-key block; the whole internal tree, 163 ms and 7,151 (leaves, since then not read at all:
124 ms and 1). At 2.4 million keys, 1 GiB had rotated twice: 261 ms and 2,252 reads; 2 GiB, 212 ms and 1."""
ENTRY_OVERHEAD_BYTES: Final = 160
"""What one entry costs beyond its value's bytes: the 40-byte reference as a Python bytes object, the value's
object header and the dict slot (measured with tracemalloc on CPython 3.11: 239 bytes per entry of 81-byte
internal nodes; 246 for the mix of :data:`INTERNAL_NODE_BYTES`, which this estimate puts at 264)."""
REF_BYTES: Final = 40
"""Length of a node reference (8-byte version ‖ 32-byte hash); other keys of the node table are not cached."""
INTERNAL_NODE_BYTES: Final = 104
"""An internal node's encoding, on average: tag ‖ left reference ‖ right reference (81 bytes), then 32 bytes for
each child that is a leaf. Over a tree of 200,000 random keys written 5,000 per block the mean is 103.2 bytes
(56 % of internal nodes have no leaf child, 19 % one, 25 % two)."""
_INTERNAL_NODE_LENGTHS: Final = {1: 81, 3: 113, 5: 113, 7: 145}
"""An internal node's length by its tag (the tag says which children's paths follow the references)."""
ENTRY_BYTES: Final = INTERNAL_NODE_BYTES + ENTRY_OVERHEAD_BYTES
"""Estimated memory of one entry (all entries are internal nodes)."""


class NodeCache:
    """Reference → node bytes, bounded by :data:`NODE_CACHE_BYTES` (or ``budget_bytes``).

    Every entry is an internal node (81 to 145 bytes) under a 40-byte reference, so the memory is counted in entries
    (:data:`ENTRY_BYTES` each) and the dicts' own lengths are the count: the per-block bulk operations (tens of
    thousands of nodes added and discarded per full block) run as single dict calls with no bookkeeping per entry.
    """

    __slots__ = ("_half", "_old", "_young")

    def __init__(self, budget_bytes: int = NODE_CACHE_BYTES):
        self._half = max(1, budget_bytes // (2 * ENTRY_BYTES))
        """Entries per generation."""
        self._young: dict[bytes, bytes] = {}
        self._old: dict[bytes, bytes] = {}

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
        change; a leaf: commits read none, see the module's docstring)."""
        if len(ref) != REF_BYTES or not node or _INTERNAL_NODE_LENGTHS.get(node[0]) != len(node):
            return
        self._young[ref] = node
        if len(self._young) >= self._half:
            self._rotate()

    def add_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """:meth:`add` for each (reference, node) — as one dict update; the generation may then exceed its half of
        the budget by this call's entries (one block's internal nodes) until it rotates."""
        self._young.update((ref, node) for ref, node in items if len(ref) == REF_BYTES and node[0] & 1)
        if len(self._young) >= self._half:
            self._rotate()

    def _rotate(self) -> None:
        self._old, self._young = self._young, {}

    def discard_many(self, refs: Iterable[bytes]) -> None:
        """Forget these references: the nodes a commit replaced, which no walk from a later root reaches."""
        refs = refs if isinstance(refs, (tuple, list)) else tuple(refs)
        young, old = self._young, self._old  # (an entry hit in the old generation is in both)
        deque(map(young.pop, refs, repeat(None, len(refs))), maxlen=0)  # the loops run in C
        deque(map(old.pop, refs, repeat(None, len(refs))), maxlen=0)

    def get_refs(self) -> set[bytes]:
        """Every reference held now (a copy) — for the tests' check that only the live tree is kept."""
        return set(self._young) | set(self._old)

    def get_size(self) -> tuple[int, int]:
        """(entries, estimated bytes) now held — for the metrics and the tests (an entry moved back from the old
        generation to the young one counts once)."""
        entries = len(self._young.keys() | self._old.keys())
        return entries, entries * ENTRY_BYTES

    def get_estimated_bytes(self) -> int:
        """Estimated memory held, at O(1) (an upper bound: an entry moved back from the old generation to the
        young one counts in both until the old one is dropped) — for the metrics."""
        return (len(self._young) + len(self._old)) * ENTRY_BYTES

    def clear(self) -> None:
        """Forget everything (the store is being closed or replaced)."""
        self._young, self._old = {}, {}
