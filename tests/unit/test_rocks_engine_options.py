"""The RocksDB engine runs with its own options on every open, not only on the first.

rocksdict reopens an existing database with the options its OPTIONS file records, and that file cannot record a
block cache object: a store reopened (every node restart, every offline tool, a node started on a home that
``qilian init`` created) ran on RocksDB's default 8 MiB cache, where a 30-minute soak's point reads slowed down
sixfold (docs/benchmarks.md, "RocksDB point reads"). These tests read the live database's own properties."""

from __future__ import annotations

from pathlib import Path

from qilian.storage.engine import ROCKS_BLOCK_CACHE_BYTES, RocksEngine


def _cache_capacity(engine: RocksEngine) -> int:
    value = engine.db.property_value("rocksdb.block-cache-capacity")
    assert value is not None
    return int(value)


def test_a_reopened_store_keeps_the_configured_block_cache(tmp_path: Path) -> None:
    first = RocksEngine(tmp_path / "db")
    assert _cache_capacity(first) == ROCKS_BLOCK_CACHE_BYTES
    first.close()
    for _ in range(2):
        again = RocksEngine(tmp_path / "db")
        assert _cache_capacity(again) == ROCKS_BLOCK_CACHE_BYTES
        again.close()


def test_a_secondary_reader_keeps_the_configured_block_cache(tmp_path: Path) -> None:
    writer = RocksEngine(tmp_path / "db")
    try:
        reader = RocksEngine(tmp_path / "db", readonly=True)
        try:
            assert _cache_capacity(reader) == ROCKS_BLOCK_CACHE_BYTES
        finally:
            reader.close()
    finally:
        writer.close()


def test_new_tables_are_written_with_partitioned_index_and_filters(tmp_path: Path) -> None:
    engine = RocksEngine(tmp_path / "db")
    engine.close()
    options = max((tmp_path / "db").glob("OPTIONS-*")).read_text()
    assert "index_type=kTwoLevelIndexSearch" in options
    assert "partition_filters=true" in options
