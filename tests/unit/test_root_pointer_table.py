"""Root pointers (root hash → reference) live in their own table, apart from the tree nodes, and stores written
before that — pointers among the nodes, and on LMDB no table for them at all — still read and prune.

Why apart: a node's key is ``version ‖ hash``, so a block's nodes append to the nodes' table in key order; a root
pointer's key is a random hash, and one per block among the nodes made every RocksDB file of nodes overlap every
other, so compaction rewrote them all (docs/benchmarks.md, "A column family per table")."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

from qilian.crypto import get_suite
from qilian.state import ZERO_HASH, StateTree
from qilian.storage.store import ChainStore
from qilian.types.core import Commit
from tests.unit.test_storage import GENESIS, commit, make_block, make_tip, open_store

ENGINES = ("rocksdb", "lmdb")
HASH = get_suite("ed25519").hash


def _commit_state(store: ChainStore, root: bytes, height: int, value: bytes) -> bytes:
    """Commit one block whose state sets one key; returns the new root."""
    writes: dict[tuple[str, bytes], bytes | None] = {("kv", b"k%d" % height): value}
    state = StateTree(HASH, store).compute_commit(root, writes, height)
    store.process_commit_block(make_block(height), Commit(height, 0, b"\1" * 32, ()), [], [], writes, state.nodes,
                               make_tip(height), (), state.stale, state.replaced_root)
    return state.root


@pytest.mark.parametrize("engine", ENGINES)
def test_root_pointers_are_written_to_their_own_table(tmp_path: Path, engine: str) -> None:
    store = open_store(tmp_path / "d", engine)
    try:
        tree = StateTree(HASH, store)
        root = _commit_state(store, ZERO_HASH, 1, b"one")
        assert store.kv.get(b"p", root) is not None and store.kv.get(b"n", root) is None
        assert all(len(k) == 40 for k, _ in store.kv.iter_from(b"n", b""))
        assert tree.get_value(root, "kv", b"k1") == b"one"
        with store.begin_snapshot() as snap:
            assert StateTree(HASH, snap).get_value(root, "kv", b"k1") == b"one"
    finally:
        store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_store_with_root_pointers_among_the_nodes_still_reads_and_prunes_them(tmp_path: Path,
                                                                               engine: str) -> None:
    store = open_store(tmp_path / "d", engine)
    tree = StateTree(HASH, store)
    try:
        root1 = _commit_state(store, ZERO_HASH, 1, b"one")
        # As the code before the roots' table wrote it: the pointer in the nodes' table.
        pointer = store.kv.get(b"p", root1)
        assert pointer is not None
        store.kv.write([(b"p", root1, None), (b"n", root1, pointer)])
        assert store.get_node(root1) == pointer and tree.get_value(root1, "kv", b"k1") == b"one"
        with store.begin_snapshot() as snap:
            assert snap.get_node(root1) == pointer
    finally:
        store.close()
    # Pruning with a window of one version deletes the old pointer where it lies.
    store = ChainStore(tmp_path / "d", engine=engine, keep_states=1)
    try:
        store.process_enable_stale_index()
        _commit_state(store, root1, 2, b"two")
        while store.process_prune(1000).more:
            pass
        assert store.kv.get(b"n", root1) is None and store.get_node(root1) is None
    finally:
        store.close()


def test_an_lmdb_store_without_the_roots_table_opens_read_only(tmp_path: Path) -> None:
    """An LMDB file from before the table existed: a reader beside an old node (or a tool on an old store) finds
    the table empty instead of failing; the first read-write open creates it."""
    store = open_store(tmp_path / "d", "lmdb")
    commit(store, 1, [])
    store.close()
    env = lmdb.open(str(tmp_path / "d"), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"tp", txn=txn), delete=True)
    env.close()
    reader = ChainStore(tmp_path / "d", readonly=True)
    try:
        assert reader.get_tip().height == 1 and reader.get_genesis() == GENESIS
        assert reader.get_node(b"\7" * 32) is None and reader.kv.get_many(b"p", [b"x"]) == [None]
        assert list(reader.kv.iter_from(b"p", b"")) == []
        with reader.begin_snapshot() as snap:
            assert snap.get_node(b"\7" * 32) is None
    finally:
        reader.close()
    writer = ChainStore(tmp_path / "d")
    try:
        commit(writer, 2, [])
        assert writer.get_tip().height == 2
    finally:
        writer.close()
