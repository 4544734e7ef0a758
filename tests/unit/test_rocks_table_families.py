"""Each table of a RocksDB store lives in its own column family, one batch still spans them all, a snapshot is one
view across them, and a store written before the split (one keyspace) still opens and works.

Why the split: appended tables (blocks, tree nodes, …) and hash-keyed ones (the transaction map, the flat state)
shared every SST file, so compaction rewrote the appended data again and again (docs/benchmarks.md, "Compaction:
a column family per table")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rocksdict import Options, Rdict

from qilian.storage import store as store_module
from qilian.storage.engine import TABLES, RocksEngine
from qilian.storage.store import ROCKS_DIR, ChainStore
from tests.unit.test_storage import commit, open_store, tx_hash


def test_a_new_store_puts_each_table_in_its_own_column_family(tmp_path: Path) -> None:
    engine = RocksEngine(tmp_path / "db")
    try:
        assert engine.split
        engine.write([(b"n", b"k", b"node"), (b"v", b"k", b"value"), (b"b", b"k", b"block")])
        assert [engine.get(t, b"k") for t in (b"n", b"v", b"b", b"x")] == [b"node", b"value", b"block", None]
        assert engine.db.get(b"nk") is None  # not in the default column family
        assert list(engine.iter_from(b"v", b"")) == [(b"k", b"value")]
    finally:
        engine.close()
    families = set(Rdict.list_cf(str(tmp_path / "db"), Options(raw_mode=True)))
    assert {t.decode() for t in TABLES} <= families


def test_a_batch_is_atomic_across_column_families(tmp_path: Path) -> None:
    engine = RocksEngine(tmp_path / "db")
    try:
        engine.write([(b"b", b"1", b"x"), (b"n", b"1", b"y")])
        with pytest.raises(Exception):  # noqa: B017 - the binding raises a bare Exception
            engine.write([(b"b", b"2", b"x"), (b"nope", b"2", b"y")])  # an unknown table fails the whole batch
        assert engine.get(b"b", b"2") is None
    finally:
        engine.close()


class _WritingView:
    """A column family's read handle that lands a batch the first time an iterator is made over it: what a commit
    on the writer thread does when it runs while a reader builds its snapshot."""

    def __init__(self, engine: RocksEngine, table: bytes) -> None:
        self.engine, self.inner, self.fired = engine, engine._views[table], False

    def iter(self, *args: Any) -> Any:
        if not self.fired:
            self.fired = True
            self.engine.write([(b"b", b"h", b"new"), (b"n", b"h", b"new")])
        return self.inner.iter(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_snapshot_is_one_view_even_when_a_batch_lands_while_it_is_made(tmp_path: Path) -> None:
    engine = RocksEngine(tmp_path / "db")
    try:
        engine.write([(b"b", b"h", b"old"), (b"n", b"h", b"old")])
        # Blocks' iterator is made before the tree nodes' one; the batch lands in between.
        engine._views[b"n"] = _WritingView(engine, b"n")
        snap = engine.snapshot()
        try:
            assert (snap.get(b"b", b"h"), snap.get(b"n", b"h")) == (b"new", b"new")
            engine.write([(b"b", b"h", b"later"), (b"n", b"h", b"later")])
            assert (snap.get(b"b", b"h"), snap.get(b"n", b"h")) == (b"new", b"new")
            assert snap.scan(b"n", b"", None) == [(b"h", b"new")]
            engine.write([(b"x", b"added", b"1")])
            assert snap.get(b"x", b"added") is None and engine.get(b"x", b"added") == b"1"
        finally:
            snap.close()
    finally:
        engine.close()


def test_a_store_of_the_one_keyspace_layout_opens_and_keeps_working(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:  # a store as the code before the split wrote it
        m.setattr(store_module, "RocksEngine", lambda path, **kw: RocksEngine(path, split=False, **kw))
        old = open_store(tmp_path / "d", "rocksdb")
        try:
            commit(old, 1, [tx_hash(0)], {("kv", b"a"): b"1"})
        finally:
            old.close()
    assert set(Rdict.list_cf(str(tmp_path / "d" / ROCKS_DIR), Options(raw_mode=True))) == {"default"}
    store = ChainStore(tmp_path / "d")
    try:
        assert store.engine_name == "rocksdb"
        assert isinstance(store.kv, RocksEngine) and not store.kv.split
        commit(store, 2, [tx_hash(1)], {("kv", b"b"): b"2"})
        assert store.get_tip().height == 2
        assert store.get_tx_location(tx_hash(0)) == (1, 0) and store.get_tx_location(tx_hash(1)) == (2, 0)
        assert store.get_state("kv", b"a") == b"1" and store.get_state("kv", b"b") == b"2"
        with store.begin_snapshot() as snap:
            assert snap.get_tip().height == 2 and snap.get_block(1) is not None
    finally:
        store.close()
    reader = ChainStore(tmp_path / "d", readonly=True)
    try:
        assert reader.get_tip().height == 2 and reader.get_state("kv", b"b") == b"2"
    finally:
        reader.close()
