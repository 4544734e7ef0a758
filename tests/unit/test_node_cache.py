"""The store's node cache: bounded, never answers for a key it may not, and what it answers is the store's bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from qilian.crypto import get_suite
from qilian.state import StateTree
from qilian.storage.nodecache import ENTRY_BYTES, REF_BYTES, NodeCache
from qilian.storage.store import ChainStore
from qilian.types.core import Commit

from .test_storage import ENGINES, GENESIS, make_block, make_tip

NODE_N = b"\x01" + b"n" * 80
NODE_M = b"\x01" + b"m" * 80
"""Two internal nodes' encodings (tag 0x01, two 40-byte references)."""


def test_the_cache_stays_within_its_budget_and_keeps_what_was_used_lately() -> None:
    budget = 100 * ENTRY_BYTES  # room for ~100 internal nodes
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
    cache = NodeCache(4 * ENTRY_BYTES)
    leaf = b"\x00" + bytes(64) + b"value"
    cache.add(b"l" * REF_BYTES, leaf)
    cache.add(b"m" * REF_BYTES, b"\x01" + bytes(79))  # malformed (80 bytes): not an internal node either
    cache.add(b"n" * REF_BYTES, b"\x03" + bytes(80))  # says it names a leaf child's path, and does not
    assert cache.get(b"l" * REF_BYTES) is None and cache.get(b"m" * REF_BYTES) is None
    assert cache.get(b"n" * REF_BYTES) is None and cache.get_size() == (0, 0)
    for node in (b"\x03" + bytes(112), b"\x05" + bytes(112), b"\x07" + bytes(144)):  # leaf paths after the refs
        cache.add(b"o" * REF_BYTES, node)
        assert cache.get(b"o" * REF_BYTES) == node
    cache.discard_many([b"o" * REF_BYTES])
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
        if node[0] & 1:
            live.add(ref)
            stack += [child for child in (node[1:41], node[41:81]) if child != bytes(REF_BYTES)]
    return live


@pytest.mark.parametrize("engine", ENGINES)
def test_after_each_commit_the_cache_holds_only_the_current_trees_internal_nodes(tmp_path: Path,
                                                                                 engine: str) -> None:
    """The replaced nodes of each commit (``StateCommit.stale``) are dropped, leaves are never kept: what the cache
    holds after a block is exactly the internal nodes of the tree at the tip — overwrites, deletes and inserts
    mixed."""
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
            # All of the live tree's internal nodes, whatever leaf paths they carry, and nothing else.
            assert held and held == _get_live_internal_refs(store, root), f"block {height}"
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


def test_node_toml_node_cache_mib_is_read_checked_written_and_used(tmp_path: Path) -> None:
    """``[store] node_cache_mib`` sets the node's cache budget; a bad value refuses to start with the reason."""
    from qilian.node.config import init_home, load_config, save_config
    from qilian.node.node import Node
    from qilian.types.core import ChainParams

    home = tmp_path / "home"
    init_home(home, chain_id="cache-chain", suite_name="ed25519", params=ChainParams())
    toml = home / "node.toml"
    assert load_config(home).store_node_cache_mib == 2048
    for bad in ("0", "70000", '"big"'):
        toml.write_text(toml.read_text().split("\n[store]")[0] + f"\n[store]\nnode_cache_mib = {bad}\n")
        with pytest.raises(ValueError, match=r"\[store\] node_cache_mib must be an integer in 1..65536"):
            load_config(home)
    toml.write_text(toml.read_text().replace(f"node_cache_mib = {bad}", "node_cache_mib = 2"))
    cfg = load_config(home)
    save_config(cfg)
    assert load_config(home).store_node_cache_mib == 2
    node = Node(load_config(home))
    try:  # 2 MiB: the generation rotates at 1 MiB ÷ 241 B = 4,351 entries
        for i in range(10_000):
            node.store.node_cache.add(i.to_bytes(40, "big"), NODE_N)
            assert node.store.node_cache.get_estimated_bytes() <= 2 * 1024 * 1024
        assert node.store.node_cache.get_size()[0] > 4_000
    finally:
        node.store.close()
