"""A tree internal node names the paths of its leaf children (store layout 3), so a commit reads no leaf.

What a user depends on: the same roots as before (the marks are not hashed), a store written before the marks
(layout 2) opening and growing on, and a commit that does not touch the engine for leaves — the reads the soak
found per inserted key (docs/benchmarks.md, "Leaf paths in the parent")."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from qilian.crypto import get_suite
from qilian.state import EMPTY_ROOT, StateTree
from qilian.state.tree import MemoryNodeStore
from qilian.storage.store import LAYOUT, ChainStore, StoreLayoutError
from qilian.types.core import Commit

from .test_storage import ENGINES, GENESIS, make_block, make_tip

Writes = dict[tuple[str, bytes], bytes | None]


def _make_blocks(seed: int, count: int) -> list[Writes]:
    """Inserts, then overwrites and deletes of earlier keys mixed with inserts (a delete lifts a leaf)."""
    rng = random.Random(seed)
    keys: list[bytes] = []
    blocks: list[Writes] = []
    for height in range(count):
        writes: Writes = {}
        for key in rng.sample(keys, min(len(keys), 60)) if height else []:
            writes[("kv", key)] = None if rng.random() < 0.5 else rng.randbytes(rng.randrange(1, 40))
        for _ in range(120):
            key = rng.randbytes(5)
            keys.append(key)
            writes[("kv", key)] = rng.randbytes(rng.randrange(1, 40))
        blocks.append(writes)
    return blocks


def _strip_marks(nodes: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The same nodes as layout 2 stored them: tag 1 and the two references only (same hashes)."""
    return {ref: (b"\x01" + enc[1:81] if len(ref) == 40 and enc[0] & 1 else enc) for ref, enc in nodes.items()}


def _commit(store: ChainStore, height: int, root: bytes, writes: Writes, strip: bool = False) -> bytes:
    commit = StateTree(get_suite("ed25519").hash, store).compute_commit(root, writes, height)
    nodes = _strip_marks(commit.nodes) if strip else commit.nodes
    store.process_commit_block(make_block(height), Commit(height, 0, b"\1" * 32, ()), [], [], writes, nodes,
                               make_tip(height), stale_nodes=commit.stale, replaced_root=commit.replaced_root)
    return commit.root


@pytest.mark.parametrize("engine", ENGINES)
def test_a_layout_2_store_opens_is_marked_layout_3_and_grows_on_to_the_same_roots(tmp_path: Path,
                                                                                  engine: str) -> None:
    """Three blocks stored as layout 2 did (unmarked nodes), then a restart on this version and three more blocks
    that overwrite and delete the old keys: every root equals a fresh in-memory tree's, and the fsck passes."""
    hash_fn = get_suite("ed25519").hash
    blocks = _make_blocks(3, 6)
    fresh = StateTree(hash_fn, MemoryNodeStore())
    fresh_roots = []
    root = EMPTY_ROOT
    for height, writes in enumerate(blocks, 1):
        root, nodes = fresh.apply_writes(root, writes, height)
        assert isinstance(fresh.store, MemoryNodeStore)
        fresh.store.put_nodes(nodes)
        fresh_roots.append(root)

    store = ChainStore(tmp_path / "d", engine=engine)
    store.process_init(GENESIS, make_tip(0), {}, {})
    root = EMPTY_ROOT
    for height, writes in enumerate(blocks[:3], 1):
        root = _commit(store, height, root, writes, strip=True)
        assert root == fresh_roots[height - 1]
    store.kv.write([(b"m", b"layout", b"qilian-store/2")])
    store.close()

    store = ChainStore(tmp_path / "d", engine=engine)
    try:
        assert store.kv.get(b"m", b"layout") == LAYOUT == b"qilian-store/3"
        for height, writes in enumerate(blocks[3:], 4):
            root = _commit(store, height, root, writes)
            assert root == fresh_roots[height - 1]
        tree = StateTree(hash_fn, store)
        live = {k for block in blocks for k, v in block.items()}
        expected = {k for k in live if next(b[k] for b in reversed(blocks) if k in b) is not None}
        assert tree.check_tree(root) == len(expected) > 0
        for key in sorted(expected)[:50]:
            assert tree.get_value(root, *key) == next(b[key] for b in reversed(blocks) if key in b)
    finally:
        store.close()


def test_another_layout_is_refused(tmp_path: Path) -> None:
    store = ChainStore(tmp_path / "d", engine="rocksdb")
    store.process_init(GENESIS, make_tip(0), {}, {})
    store.kv.write([(b"m", b"layout", b"qilian-store/9")])
    store.close()
    with pytest.raises(StoreLayoutError, match="qilian-store/9"):
        ChainStore(tmp_path / "d", engine="rocksdb")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_commit_reads_no_leaf_from_the_engine(tmp_path: Path, engine: str) -> None:
    """After a restart (an empty node cache), blocks that insert, overwrite and delete keys read internal nodes
    only: every leaf the commits split, replace or lift is known from its parent's mark."""
    store = ChainStore(tmp_path / "d", engine=engine)
    store.process_init(GENESIS, make_tip(0), {}, {})
    blocks = _make_blocks(9, 8)
    root = EMPTY_ROOT
    for height, writes in enumerate(blocks[:4], 1):
        root = _commit(store, height, root, writes)
    store.close()
    store = ChainStore(tmp_path / "d", engine=engine)
    try:
        kinds: list[int] = []
        get = store.kv.get

        def recording_get(table: bytes, key: bytes) -> bytes | None:
            value = get(table, key)
            if table == b"n" and value is not None:
                kinds.append(value[0])
            return value

        store.kv.get = recording_get  # type: ignore[method-assign]
        for height, writes in enumerate(blocks[4:], 5):
            root = _commit(store, height, root, writes)
        assert kinds, "the commits must read nodes from the engine to mean anything"
        assert all(tag & 1 for tag in kinds), f"{kinds.count(0)} leaves read"
    finally:
        store.close()
