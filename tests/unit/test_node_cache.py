"""The store's node cache: bounded, never answers for a key it may not, and what it answers is the store's bytes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from qilian.crypto import get_suite
from qilian.state import StateTree
from qilian.state.tree import MemoryNodeStore
from qilian.storage.nodecache import ENTRY_OVERHEAD_BYTES, REF_BYTES, NodeCache
from qilian.storage.store import ChainStore
from qilian.types.core import Commit

from .test_storage import ENGINES, GENESIS, make_block, make_tip

NODE_N = b"\x01" + b"n" * 80
NODE_M = b"\x01" + b"m" * 80
"""Two internal nodes' encodings (tag 0x01, two 40-byte references)."""


def test_the_cache_stays_within_its_budget_and_keeps_what_was_used_lately() -> None:
    budget = 100 * (81 + ENTRY_OVERHEAD_BYTES)  # room for ~100 internal nodes
    cache = NodeCache(budget)
    refs = [i.to_bytes(8, "big") + bytes(32) for i in range(1_000)]
    for ref in refs:
        cache.add(ref, NODE_N)
        entries, size = cache.get_size()
        assert size <= budget and entries <= 100
        assert cache.get_estimated_bytes() == size  # the metrics' O(1) figure (no entry was moved back yet)
    assert cache.get(refs[-1]) == NODE_N  # the latest are kept …
    assert cache.get(refs[0]) is None  # … the oldest dropped
    hot = refs[-30]
    assert cache.get(hot) is not None
    for ref in refs[:70]:  # a hit moved ``hot`` to the young generation: it outlives a rotation
        cache.add(ref, NODE_M)
    assert cache.get(hot) == NODE_N


def test_root_pointers_are_never_cached() -> None:
    """A root pointer (32-byte root hash → latest reference) is rewritten when a key set recurs: always read."""
    cache = NodeCache()
    cache.add(b"r" * 32, b"x" * REF_BYTES)
    assert cache.get(b"r" * 32) is None and cache.get_size() == (0, 0)


def test_leaves_are_not_cached_and_a_discarded_node_is_forgotten_in_both_generations() -> None:
    cache = NodeCache(4 * (81 + ENTRY_OVERHEAD_BYTES))
    leaf = b"\x00" + bytes(64) + b"value"
    cache.add(b"l" * REF_BYTES, leaf)
    cache.add(b"m" * REF_BYTES, b"\x01" + bytes(79))  # malformed (80 bytes): not an internal node either
    assert cache.get(b"l" * REF_BYTES) is None and cache.get(b"m" * REF_BYTES) is None
    assert cache.get_size() == (0, 0)
    a, b = b"a" * REF_BYTES, b"b" * REF_BYTES
    cache.add(a, NODE_N)
    cache.add(b, NODE_M)  # the young generation is full: both move to the old one
    assert cache.get(a) == NODE_N  # a hit in the old generation copies it back to the young one
    cache.discard_many([a, b, b"never cached" + bytes(28)])
    assert cache.get(a) is None and cache.get(b) is None
    assert cache.get_size() == (0, 0) and cache.get_estimated_bytes() == 0


def _get_live_internal_refs(store: ChainStore, root: bytes) -> set[bytes]:
    """References of every internal node reachable from ``root``, walked through the engine (not the cache)."""
    pointer = store.get_node(root)  # a root pointer: always read from the engine
    assert pointer is not None
    live: set[bytes] = set()
    stack = [pointer]
    while stack:
        ref = stack.pop()
        node = store.kv.get(b"n", ref)
        assert node is not None
        if node[0] == 1:
            live.add(ref)
            stack += [child for child in (node[1:41], node[41:81]) if child != bytes(REF_BYTES)]
    return live


@pytest.mark.parametrize("engine", ENGINES)
def test_after_each_commit_the_cache_holds_only_the_current_trees_internal_nodes(tmp_path: Path,
                                                                                 engine: str) -> None:
    """The replaced nodes of each commit (``StateCommit.stale``) are dropped, leaves are never kept: whatever the
    cache holds after a block is an internal node of the tree at the tip — overwrites, deletes and inserts mixed."""
    suite = get_suite("ed25519")
    store = ChainStore(tmp_path / "d", engine=engine)
    store.process_init(GENESIS, make_tip(0), {}, {})
    rng = random.Random(11)
    keys = [rng.randbytes(6) for _ in range(600)]
    root = b"\0" * 32
    try:
        for height in range(1, 10):
            writes: dict[tuple[str, bytes], bytes | None] = {}
            for key in rng.sample(keys, 150):
                writes[("kv", key)] = None if rng.random() < 0.3 else rng.randbytes(rng.randrange(1, 60))
            commit = StateTree(suite.hash, store).compute_commit(root, writes, height)
            assert commit.stale or height == 1, "the test must replace nodes to mean anything"
            store.process_commit_block(make_block(height), Commit(height, 0, b"\1" * 32, ()), [], [], writes,
                                       commit.nodes, make_tip(height), stale_nodes=commit.stale,
                                       replaced_root=commit.replaced_root)
            root = commit.root
            held = store.node_cache.get_refs()
            assert held and held <= _get_live_internal_refs(store, root), f"block {height}"
            assert not held & set(commit.stale)
    finally:
        store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_tree_reads_through_the_cache_equal_the_engines_bytes(tmp_path: Path, engine: str) -> None:
    """Blocks of random writes committed through the real tree: every node of every root reads the same through
    the cache (store and snapshot), from a fresh store with an empty cache, and through the engine directly."""
    suite = get_suite("ed25519")
    store = ChainStore(tmp_path / "d", engine=engine)
    store.process_init(GENESIS, make_tip(0), {}, {})
    rng = random.Random(7)
    root, roots = StateTree(suite.hash, store).apply_writes(b"\0" * 32, {})[0], []
    try:
        for height in range(1, 8):
            writes = {("kv", rng.randbytes(4)): rng.randbytes(rng.randrange(1, 300)) for _ in range(200)}
            commit = StateTree(suite.hash, store).compute_commit(root, writes, height)
            store.process_commit_block(make_block(height), Commit(height, 0, b"\1" * 32, ()), [], [], writes,
                                       commit.nodes, make_tip(height))
            root = commit.root
            roots.append((root, writes))
        assert store.node_cache.get_size()[0] > 0
        memory = store.get_memory_bytes()  # what /metrics reports as qilian_memory_bytes
        assert memory["node_cache"] == store.node_cache.get_estimated_bytes() > 0
        if engine == "rocksdb":
            assert memory["rocksdb_memtables"] > 0 and memory["rocksdb_block_cache"] >= 0
            assert set(memory) == {"node_cache", "rocksdb_memtables", "rocksdb_block_cache",
                                   "rocksdb_block_cache_pinned", "rocksdb_table_readers"}
        else:
            assert set(memory) == {"node_cache"}
        with store.begin_snapshot() as snap:
            for r, writes in roots[-1:]:
                for (ns, key), value in writes.items():
                    assert StateTree(suite.hash, store).get_value(r, ns, key) == value
                    assert StateTree(suite.hash, snap).get_value(r, ns, key) == value
            refs = [k for k, _ in store.kv.iter_from(b"n", b"") if len(k) == REF_BYTES]
            assert refs and all(store.get_node(k) == store.kv.get(b"n", k) == snap.get_node(k) for k in refs)
    finally:
        store.close()
    again = ChainStore(tmp_path / "d", engine=engine)
    try:
        assert again.node_cache.get_size() == (0, 0)
        assert StateTree(suite.hash, again).check_tree(root) > 0
    finally:
        again.close()


class _CountingNodeStore(MemoryNodeStore):
    """A batching node store over a dict that holds the internal nodes of ``in_memory`` "in memory": it counts
    single reads and batched ones, so a test can see which path a commit's reads took."""

    def __init__(self, nodes: dict[bytes, bytes], in_memory: set[bytes]) -> None:
        super().__init__(nodes)
        self.in_memory = in_memory
        self.single_reads = 0
        self.batches: list[int] = []

    def get_node(self, node_hash: bytes) -> bytes | None:
        # A read of what is not in memory ("from the engine"); root pointers are always one read, not counted.
        self.single_reads += len(node_hash) == REF_BYTES and node_hash not in self.in_memory
        return self.nodes.get(node_hash)

    def peek_node(self, ref: bytes) -> bytes | None:
        return self.nodes.get(ref) if ref in self.in_memory else None

    def get_nodes(self, refs: Sequence[bytes]) -> list[bytes | None]:
        self.batches.append(len(refs))
        nodes = [self.nodes.get(r) for r in refs]
        self.in_memory.update(r for r, n in zip(refs, nodes, strict=True) if n and n[0] == 1)  # as the store's cache
        return nodes


@pytest.mark.parametrize("cached", ["all internal nodes", "nothing"])
def test_a_commit_reads_what_memory_lacks_in_one_batch_per_level_and_computes_the_same(cached: str) -> None:
    """The read-ahead of :meth:`StateTree.compute_commit` over a :class:`BatchNodeStore`: inserts, overwrites and
    deletes into a 3,000-key tree give exactly the commit of a plain store (root, nodes, stale, replaced root),
    and the leaves they end at — plus every internal node when nothing is in memory — come in batches, one per
    level, not as one read each."""
    suite = get_suite("ed25519")
    rng = random.Random(5)
    keys = [rng.randbytes(8) for _ in range(3_000)]
    plain = MemoryNodeStore()
    root, nodes = StateTree(suite.hash, plain).apply_writes(b"\0" * 32, {("kv", k): b"v" + k for k in keys})
    plain.put_nodes(nodes)
    writes: dict[tuple[str, bytes], bytes | None] = {("kv", rng.randbytes(8)): b"new" for _ in range(300)}
    writes.update({("kv", k): b"changed" for k in rng.sample(keys, 100)})
    writes.update({("kv", k): None for k in rng.sample(keys, 100)})
    internal = {r for r, n in plain.nodes.items() if len(r) == REF_BYTES and n[0] == 1}
    batching = _CountingNodeStore(plain.nodes, set(internal) if cached == "all internal nodes" else set())
    expected = StateTree(suite.hash, plain).compute_commit(root, writes, 2)
    got = StateTree(suite.hash, batching).compute_commit(root, writes, 2)
    assert got == expected and got.stale and got.replaced_root
    assert sum(batching.batches) >= 300  # the leaves that 500 walks end at (a new key's may end at an empty child)
    if cached == "all internal nodes":
        assert len(batching.batches) == 1
    else:
        assert 10 <= len(batching.batches) <= 40  # one per level of a ~3,000-key tree
    # What is left to single reads: the siblings a delete may lift (is a neighbour a leaf?), never the walks.
    assert batching.single_reads < 0.2 * sum(batching.batches)
    few = dict(list(writes.items())[:10])  # below PREFETCH_MIN_WRITES: single reads only
    batching.batches.clear()
    assert StateTree(suite.hash, batching).compute_commit(root, few, 2) == StateTree(
        suite.hash, plain).compute_commit(root, few, 2)
    assert not batching.batches


@pytest.mark.parametrize("engine", ENGINES)
def test_the_chain_store_batches_a_commits_leaf_reads(tmp_path: Path, engine: str) -> None:
    """On the chain store itself: with the internal nodes cached, a 500-insert commit reads its leaves through
    ``get_many`` of the engine (RocksDB's multi-get), not one engine read per leaf — and commits the same root
    as a plain store."""
    suite = get_suite("ed25519")
    store = ChainStore(tmp_path / "d", engine=engine)
    store.process_init(GENESIS, make_tip(0), {}, {})
    rng = random.Random(3)
    root, mirror = b"\0" * 32, MemoryNodeStore()
    single, batched = [0], [0]
    get, get_many = store.kv.get, store.kv.get_many

    def counting_get(table: bytes, key: bytes) -> bytes | None:
        single[0] += table == b"n"
        return get(table, key)

    def counting_get_many(table: bytes, keys: Sequence[bytes]) -> list[bytes | None]:
        batched[0] += len(keys) if table == b"n" else 0
        return get_many(table, keys)

    try:
        for height in (1, 2):
            writes = {("kv", rng.randbytes(10)): rng.randbytes(30) for _ in range(500)}
            if height == 2:
                single[0] = batched[0] = 0
                store.kv.get, store.kv.get_many = counting_get, counting_get_many  # type: ignore[method-assign]
            commit = StateTree(suite.hash, store).compute_commit(root, writes, height)
            assert commit == StateTree(suite.hash, mirror).compute_commit(root, writes, height)
            mirror.put_nodes(commit.nodes)
            store.process_commit_block(make_block(height), Commit(height, 0, b"\1" * 32, ()), [], [], writes,
                                       commit.nodes, make_tip(height), stale_nodes=commit.stale,
                                       replaced_root=commit.replaced_root)
            root = commit.root
        assert batched[0] >= 100 and single[0] <= 5  # (a new key's walk may end at an empty child: no read)
    finally:
        store.close()
