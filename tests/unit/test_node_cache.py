"""The store's node cache: bounded, never answers for a key it may not, and what it answers is the store's bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from qilian.crypto import get_suite
from qilian.state import StateTree
from qilian.storage.nodecache import ENTRY_OVERHEAD_BYTES, REF_BYTES, NodeCache
from qilian.storage.store import ChainStore
from qilian.types.core import Commit

from .test_storage import ENGINES, GENESIS, make_block, make_tip


def test_the_cache_stays_within_its_budget_and_keeps_what_was_used_lately() -> None:
    budget = 100 * (81 + ENTRY_OVERHEAD_BYTES)  # room for ~100 internal nodes
    cache = NodeCache(budget)
    refs = [i.to_bytes(8, "big") + bytes(32) for i in range(1_000)]
    for ref in refs:
        cache.add(ref, b"n" * 81)
        entries, size = cache.get_size()
        assert size <= budget and entries <= 100
        assert cache.get_estimated_bytes() == size  # the metrics' O(1) figure (no entry was moved back yet)
    assert cache.get(refs[-1]) == b"n" * 81  # the latest are kept …
    assert cache.get(refs[0]) is None  # … the oldest dropped
    hot = refs[-30]
    assert cache.get(hot) is not None
    for ref in refs[:70]:  # a hit moved ``hot`` to the young generation: it outlives a rotation
        cache.add(ref, b"m" * 81)
    assert cache.get(hot) == b"n" * 81


def test_root_pointers_are_never_cached() -> None:
    """A root pointer (32-byte root hash → latest reference) is rewritten when a key set recurs: always read."""
    cache = NodeCache()
    cache.add(b"r" * 32, b"x" * REF_BYTES)
    assert cache.get(b"r" * 32) is None and cache.get_size() == (0, 0)


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
