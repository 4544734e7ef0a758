"""Key-value engines under the chain store: one ordered keyspace split into named tables, atomic synced batches,
point-in-time snapshots.

Why two engines
---------------
The chain store writes, per block, a few large values keyed by height (block, commit, receipts), the state-tree
nodes keyed ``version ‖ hash`` (all at the end of the key space) — and two maps whose keys are hashes: transaction
hash → location and state key → value. In a B-tree (LMDB) a hash-keyed insert lands on a random leaf page, so a
block of 5,000 transactions dirties ~5,000 pages per such table once the table outgrows that, and all of them are
written and fsynced per block: the commit slowed from 0.1 s to 0.8 s over a 10-minute soak (docs/benchmarks.md,
"Soak"). An LSM tree (RocksDB) turns every insert into an append to its write-ahead log and a memtable insert;
sorting happens later, in bulk, on background threads. ``qilian bench store`` measures both on the same synthetic
chain; the node uses :class:`RocksEngine` (the figures are in docs/benchmarks.md), :class:`LmdbEngine` remains for
the comparison and for tools that want a single-file store.

Guarantees both engines give the store: :meth:`write` applies a whole batch or nothing, and when it returns the
batch is durable (LMDB: one synced write transaction; RocksDB: one ``WriteBatch`` with ``sync=True`` — the WAL is
fsynced before the call returns, and recovery replays whole batches only). Snapshots see one batch boundary.

Readers in other processes
--------------------------
RocksDB admits one process that opens the database (its ``LOCK`` file); LMDB admits any number. A reader in
another process (``qilian indexer --home H`` beside a running node) therefore opens RocksDB as a *secondary
instance* (:class:`RocksEngine` with ``readonly=True``): it takes no lock, writes nothing into the node's
directory (its own info log goes to a private temporary directory), and sees the primary as of its open or its
last :meth:`RocksEngine.catch_up`, which replays the primary's MANIFEST and write-ahead log — whole batches only,
so a reader never sees half a block. Between catch-ups its view does not move. It keeps every SST file it has
opened open (``max_open_files = -1``): the primary deletes compacted files while the reader runs, and an open
descriptor keeps a deleted file readable until the next catch-up drops it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import lmdb

TABLES: Final = (b"m", b"b", b"c", b"r", b"h", b"x", b"n", b"v", b"g", b"s", b"p")
"""Every table of the store, one byte each: the name of its RocksDB column family (and the prefix of its keys
there), and of its LMDB sub-database (after ``t``)."""

LMDB_MAP_SIZE: Final = 64 * 1024**3
"""LMDB map size: the most an LMDB store may grow to (a sparse reservation, not disk use)."""
ROCKS_WRITE_BUFFER_BYTES: Final = 32 * 1024**2
"""RocksDB memtable size; a full one is flushed to an SST file by a background thread."""
ROCKS_MAX_WRITE_BUFFERS: Final = 3
"""Memtables held at most (one active, the rest waiting for flush): memtable memory ≤ 96 MiB."""
ROCKS_BLOCK_CACHE_BYTES: Final = 64 * 1024**2
"""RocksDB block cache, which also holds index and filter blocks (so their memory is bounded too, not one
per SST file for ever): with the memtables this bounds the engine's memory as the store grows. The index and the
filters are *partitioned* (see :func:`_rocks_options`) so that what the cache holds are small pieces."""
ROCKS_MAX_OPEN_FILES: Final = 512
"""SST files kept open (the table cache); bounded so file handles and their metadata do not grow with the store."""
ROCKS_BACKGROUND_JOBS: Final = 2
"""Flush and compaction threads (the machine this was measured on has two cores)."""
ROCKS_BLOOM_BITS: Final = 10
"""Bloom filter bits per key: a lookup of an absent hash (every new transaction) skips SST files at ~1 % false
positives."""
ROCKS_MAX_WAL_BYTES: Final = 256 * 1024**2
"""Write-ahead log kept at most: past it RocksDB flushes the column families that still need the oldest log file."""
ROCKS_MMAP_READS: Final = False
"""Whether RocksDB reads SST files through memory maps instead of ``pread`` into the block cache. Off: measured
both ways on the same day (docs/benchmarks.md, "Memory-mapped reads"), maps made a bare state-tree loop's commit
16–23 % cheaper, but the store bench's tree time at 1,000,000 transactions did not move (309 vs 310 ms per block)
and the 30-minute soaks with it on stayed within run-to-run noise of the soaks without. What they cost is
certain: an I/O error under a mapped page kills the process (SIGBUS) instead of raising, and the mapped pages
count in the node's ``VmRSS``."""

Op = tuple[bytes, bytes, bytes | None]
"""One write of a batch: (table, key, value), value None to delete."""


class KVSnapshot(Protocol):
    """A consistent read view; must be closed."""

    def get(self, table: bytes, key: bytes) -> bytes | None: ...

    def scan(self, table: bytes, start: bytes, end: bytes | None, limit: int | None = None,
             ) -> list[tuple[bytes, bytes]]:
        """(key, value) of ``table`` with ``start ≤ key < end`` (``end`` None: to the table's end), in key
        order, at most ``limit`` — read in the snapshot, and returned whole (no lazy iteration that a point read
        through the same snapshot could move)."""

    def close(self) -> None: ...


class KVEngine(Protocol):
    """The storage interface the chain store is written against."""

    def get(self, table: bytes, key: bytes) -> bytes | None: ...

    def get_many(self, table: bytes, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def write(self, ops: Sequence[Op]) -> None: ...

    def iter_from(self, table: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def snapshot(self) -> KVSnapshot: ...

    def catch_up(self) -> None: ...

    def compact(self) -> None:
        """Give the space of deleted entries back (offline: no other process may have the database open)."""

    def flush(self) -> None: ...

    def write_sorted(self, table: bytes, items: Sequence[tuple[bytes, bytes]]) -> None: ...

    def close(self) -> None: ...

    @property
    def is_bulk_load_order_free(self) -> bool:
        """True when a bulk load costs the same in any key order (an LSM tree sorts in its own background
        compactions); False when it must arrive in key order to be cheap (a B-tree rewrites the pages each
        batch touches): a state sync spills and merges sorted runs only for the latter."""


class SnapshotClosed(RuntimeError):
    """A read through a snapshot after it was closed: a caller kept a view past its life (a bug, never data)."""


class EngineBusy(Exception):
    """Another process holds the database open for writing (RocksDB's LOCK): the node is running."""


def get_disk_bytes(path: Path) -> int:
    """Bytes the store's files take on disk (allocated blocks, so LMDB's sparse map does not count)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # RocksDB deletes compacted files while we walk
                continue
    return total


# -- LMDB -------------------------------------------------------------------------------------------------------


class LmdbEngine:
    """Tables as LMDB sub-databases; single writer, any number of readers, across threads and processes."""

    def __init__(self, path: Path, readonly: bool = False, map_size: int = LMDB_MAP_SIZE, durable: bool = True):
        """``durable`` False: batches are not synced one by one (:meth:`flush` syncs them all) — for a store that
        is thrown away if the process dies before it is complete (a state sync's staging store)."""
        self.path = path
        self._readonly = readonly
        self._map_size = map_size
        self._durable = durable
        self.env = lmdb.open(str(path), map_size=map_size, max_dbs=len(TABLES) + 1, sync=durable,
                             metasync=durable, readonly=readonly, lock=True, max_readers=256)
        self._dbs = _open_lmdb_tables(self.env, readonly)

    @property
    def is_bulk_load_order_free(self) -> bool:
        """False: a B-tree loads fast only in key order, appended (:meth:`write_sorted`)."""
        return False

    def get(self, table: bytes, key: bytes) -> bytes | None:
        with self.env.begin() as txn:
            db = self._dbs.get(table)
            return None if db is None else txn.get(key, db=db)

    def get_many(self, table: bytes, keys: Sequence[bytes]) -> list[bytes | None]:
        db = self._dbs.get(table)
        if db is None:
            return [None] * len(keys)
        with self.env.begin() as txn:
            return [txn.get(k, db=db) for k in keys]

    def write(self, ops: Sequence[Op]) -> None:
        """Apply in (table, key) order — a B-tree takes sorted inserts page by page (the sort is stable, so two
        writes of one key keep their order)."""
        dbs = self._dbs
        with self.env.begin(write=True) as txn:
            for table, key, value in sorted(ops, key=_op_order):
                if value is None:
                    txn.delete(key, db=dbs[table])
                else:
                    txn.put(key, value, db=dbs[table])

    def iter_from(self, table: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self.env.begin() as txn:
            db = self._dbs.get(table)
            if db is not None:
                yield from _iter_lmdb(txn, db, start)

    def snapshot(self) -> LmdbSnapshot:
        return LmdbSnapshot(self)

    def flush(self) -> None:
        """Make every batch written so far durable (a no-op in effect when ``durable``)."""
        self.env.sync(True)

    def write_sorted(self, table: bytes, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Append ``items`` — in strictly increasing key order, all after the table's last key — in one
        transaction: a bulk load fills B-tree pages in order instead of rewriting random ones."""
        with self.env.begin(write=True) as txn:
            _, added = txn.cursor(db=self._dbs[table]).putmulti(items, append=True)
            if added != len(items):
                raise ValueError(f"bulk load into table {table!r}: {added} of {len(items)} items appended (keys "
                                 f"not in increasing order after the table's last)")

    def catch_up(self) -> None:
        """Nothing to do: every LMDB read transaction starts at the latest committed write, in any process."""

    def compact(self) -> None:
        """Rewrite every table, in key order with full pages, into a new file that then replaces ``data.mdb``.

        Why a rewrite: a B-tree keeps a page until deletes leave it under a quarter full, so deleting scattered
        entries (the pruner's stale tree nodes) leaves pages partly empty rather than free — the file does not
        shrink and new entries, appended at the end of the key space, never refill them. Copying the tables in
        key order with append-mode puts packs every page. Crash-safe: the new file is complete and synced before
        one ``rename`` replaces the old one; a kill before it leaves the old file (and a ``compact.tmp`` directory
        the next compaction removes). Needs free disk for the new file, and exclusive use: no node or reader may
        have the database open (the caller holds the home's lock)."""
        if self._readonly:
            raise RuntimeError("a read-only store cannot be compacted")
        tmp = self.path / LMDB_COMPACT_DIR
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        new = lmdb.open(str(tmp), map_size=self._map_size, max_dbs=len(TABLES) + 1, sync=False, metasync=False,
                        lock=True)
        try:
            with self.env.begin() as src:
                for t in TABLES:
                    db = new.open_db(b"t" + t)
                    with new.begin(write=True) as dst:
                        dst.cursor(db=db).putmulti(src.cursor(db=self._dbs[t]).iternext(), append=True)
            new.sync(True)
        finally:
            new.close()
        self.env.close()
        os.replace(tmp / _LMDB_DATA_FILE, self.path / _LMDB_DATA_FILE)
        _fsync_dir(self.path)
        shutil.rmtree(tmp, ignore_errors=True)
        self.env = lmdb.open(str(self.path), map_size=self._map_size, max_dbs=len(TABLES) + 1, sync=True,
                             metasync=True, lock=True, max_readers=256)
        self._dbs = {t: self.env.open_db(b"t" + t) for t in TABLES}

    def close(self) -> None:
        self.env.close()


LMDB_COMPACT_DIR: Final = "compact.tmp"
"""Where :meth:`LmdbEngine.compact` builds the new file before it replaces ``data.mdb``."""
_LMDB_DATA_FILE: Final = "data.mdb"


def _open_lmdb_tables(env: Any, readonly: bool) -> dict[bytes, Any]:
    """Every table's sub-database. A read-only open of a store written before a table existed (the root
    pointers' table came later) leaves that table out: reads of it find nothing, as they would in an empty one;
    the first read-write open creates it."""
    dbs: dict[bytes, Any] = {}
    for t in TABLES:
        try:
            dbs[t] = env.open_db(b"t" + t, create=not readonly)
        except lmdb.NotFoundError:
            if not readonly:
                raise
    return dbs


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _op_order(op: Op) -> tuple[bytes, bytes]:
    return op[0], op[1]


def _iter_lmdb(txn: Any, db: Any, start: bytes) -> Iterator[tuple[bytes, bytes]]:
    cur = txn.cursor(db=db)
    if not cur.set_range(start):
        return
    for k, v in cur:
        yield bytes(k), bytes(v)


class LmdbSnapshot:
    """One LMDB read transaction."""

    def __init__(self, engine: LmdbEngine):
        self._dbs = engine._dbs
        self._txn: Any = engine.env.begin()

    def get(self, table: bytes, key: bytes) -> bytes | None:
        txn = self._txn
        if txn is None:
            raise SnapshotClosed("read through a closed LMDB snapshot")
        db = self._dbs.get(table)
        raw = None if db is None else txn.get(key, db=db)
        return None if raw is None else bytes(raw)

    def scan(self, table: bytes, start: bytes, end: bytes | None, limit: int | None = None,
             ) -> list[tuple[bytes, bytes]]:
        txn = self._txn
        if txn is None:
            raise SnapshotClosed("read through a closed LMDB snapshot")
        out: list[tuple[bytes, bytes]] = []
        db = self._dbs.get(table)
        if db is None:
            return out
        for k, v in _iter_lmdb(txn, db, start):
            if (end is not None and k >= end) or (limit is not None and len(out) >= limit):
                break
            out.append((k, v))
        return out

    def close(self) -> None:
        if self._txn is not None:
            self._txn.abort()
            self._txn = None


# -- RocksDB ----------------------------------------------------------------------------------------------------


def _rocks_options(secondary: bool = False, cache: Any = None) -> Any:
    """Options of the database and of each of its column families (one per table); ``cache``: the block cache the
    column families share (one is made when None)."""
    from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options

    opt = Options(raw_mode=True)
    opt.create_if_missing(not secondary)
    opt.create_missing_column_families(not secondary)
    opt.set_write_buffer_size(ROCKS_WRITE_BUFFER_BYTES)
    opt.set_max_write_buffer_number(ROCKS_MAX_WRITE_BUFFERS)
    # One table per column family, each with its own memtables: the sum is bounded here (RocksDB flushes the
    # largest memtable when it is reached), and a rarely written table cannot keep old WAL files alive.
    opt.set_db_write_buffer_size(ROCKS_WRITE_BUFFER_BYTES * ROCKS_MAX_WRITE_BUFFERS)
    opt.set_max_total_wal_size(ROCKS_MAX_WAL_BYTES)
    opt.set_max_background_jobs(ROCKS_BACKGROUND_JOBS)
    # A secondary keeps every file it opened open, so one the primary deletes after a compaction stays readable.
    opt.set_max_open_files(-1 if secondary else ROCKS_MAX_OPEN_FILES)
    opt.set_level_compaction_dynamic_level_bytes(True)
    opt.set_allow_mmap_reads(ROCKS_MMAP_READS)
    table = BlockBasedOptions()
    table.set_block_cache(cache if cache is not None else Cache(ROCKS_BLOCK_CACHE_BYTES))
    # Index and filters live in the bounded block cache, partitioned: a lookup loads one small filter partition and
    # one index partition, and only their top levels are pinned. Whole-file ("full") filters and indexes read as
    # fast while they all fit in the cache (8 µs per absent-key get on a 1.5 GB store, both ways), but each is a
    # block of hundreds of KiB per SST: once the store's filters outgrow the cache, every point read re-reads one.
    # On an 8 MiB cache that was 50 µs per get (docs/benchmarks.md, "RocksDB point reads").
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_pin_top_level_index_and_filter(True)
    table.set_bloom_filter(ROCKS_BLOOM_BITS, False)
    opt.set_block_based_table_factory(table)
    return opt


def is_lock_refusal(exc: BaseException) -> bool:
    """Whether RocksDB refused an open because another process holds the database's ``LOCK`` file. The binding
    raises a bare Exception whose text is RocksDB's status, e.g. ``IO error: While lock file: …/LOCK: Resource
    temporarily unavailable``. Matched on the file's name and the call, not on "lock" anywhere: that also matched
    "block" in any other error (a bad block option was once reported as "open in another process")."""
    text = str(exc)
    return "/LOCK" in text or "lock file" in text.lower()


def _get_table_family(table: bytes) -> str:
    """The column family of a table: the table's byte as its name (``b`` holds blocks, ``n`` tree nodes, …)."""
    return table.decode("ascii")


ROCKS_STALL_WAIT_S: Final = 10.0
"""Longest a commit retries a write RocksDB refuses during a write stall (sleeping between tries, the GIL free)
before it writes blocking."""


class RocksEngine:
    """Each table in its own column family of one RocksDB database (so a block's batch still spans every table
    atomically: a ``WriteBatch`` across column families is applied whole or not at all).

    Why a column family per table: the tables grow in two ways — blocks, commits, receipts, the height index, the
    stale index and the tree nodes (keyed ``version ‖ hash``) are appended in key order, while the transaction map
    and the flat state values are keyed by hashes and land anywhere. In one shared keyspace every SST file spans
    all tables, so each compaction rewrote the appended data together with the random: on a 4-validator soak a
    node's compaction thread used 14 % of a core and wrote 3.6 GB for 1.4 GB ingested in ten minutes
    (docs/benchmarks.md). In their own column families, appended tables make SST files that overlap nothing older,
    which RocksDB moves down the levels without rewriting. Keys still carry the table's byte, so a store written
    before this split (everything in the default column family) is read the same way: such a store is opened in
    that layout (:attr:`split`), new stores get the split.

    Read-write: one process at a time (RocksDB's LOCK file) — the node, or an offline tool with the node stopped;
    thread-safe for one writer and any number of readers in that process. ``readonly``: a secondary instance (see
    the module docstring), any number of them beside the writer, each advancing only at :meth:`catch_up`."""

    def __init__(self, path: Path, readonly: bool = False, durable: bool = True, split: bool = True):
        """``durable`` False: batches are not synced one by one (:meth:`flush` makes them durable). ``split``
        False creates a new store in the one-keyspace layout of earlier versions (for the tests that read one);
        an existing store is always opened in the layout it has."""
        from rocksdict import AccessType, Cache, Rdict, ReadOptions, WriteOptions

        self._ReadOptions = ReadOptions
        self._secondary_dir: str | None = None
        exists = (path / "CURRENT").exists()
        if readonly:
            if not exists:
                raise FileNotFoundError(2, "no RocksDB database here", str(path))
            self._secondary_dir = tempfile.mkdtemp(prefix="qilian-store-reader-")
            access = AccessType.secondary(self._secondary_dir)
        else:
            access = AccessType.read_write()
        try:
            # The options go to every column family by name, the default one too: without it, rocksdict reopens an
            # existing database with the column family's options read back from its OPTIONS file, where the block
            # cache is not recorded — every reopened store ran on RocksDB's default 8 MiB cache instead of ours.
            opt = _rocks_options(secondary=readonly, cache=Cache(ROCKS_BLOCK_CACHE_BYTES))
            if exists:
                found = set(Rdict.list_cf(str(path), opt))
                split = _get_table_family(b"n") in found  # a table added later gets its family now
            families = {"default": opt}
            if split:
                families.update((_get_table_family(t), opt) for t in TABLES)
            self.db = Rdict(str(path), opt, column_families=families, access_type=access)
        except Exception as exc:
            self._remove_secondary_dir()
            if is_lock_refusal(exc):
                raise EngineBusy(f"{path} is open in another process (is the node running? stop it first, or "
                                 f"read it with a read-only command such as `qilian indexer`)") from exc
            raise
        self.split = split
        """Whether each table has its own column family (False: a store of the one-keyspace layout)."""
        name_of = _get_table_family if split else (lambda _t: "default")
        self._views: dict[bytes, Any] = {t: self.db.get_column_family(name_of(t)) for t in TABLES}
        """Per table, the binding's handle for reads of its column family."""
        self._families: dict[bytes, Any] = {t: self.db.get_column_family_handle(name_of(t)) for t in TABLES}
        """Per table, its column family for a write batch."""
        self._sync = WriteOptions()
        self._sync.sync = durable
        self._sync_no_stall = WriteOptions()
        self._sync_no_stall.sync = durable
        self._sync_no_stall.no_slowdown = True

    def get(self, table: bytes, key: bytes) -> bytes | None:
        value: bytes | None = self._views[table].get(table + key)
        return value

    def get_many(self, table: bytes, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        values = self._views[table].get([table + k for k in keys])
        return list(values or [])

    def write(self, ops: Sequence[Op]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        families = self._families
        for table, key, value in ops:
            if value is None:
                batch.delete(table + key, families[table])
            else:
                batch.put(table + key, value, families[table])
        self._write_without_stalling(batch)

    def _write_without_stalling(self, batch: Any) -> None:
        """Write ``batch`` synced, waiting out RocksDB's write stalls *outside* the binding.

        Why: the binding holds the GIL for the whole of a ``write``. When compaction falls behind, RocksDB slows or
        stops writes, and a write that waits inside the binding freezes every thread of the node — the event loop,
        the verifier threads, the API — for as long as the stall lasts. With ``no_slowdown`` RocksDB refuses such
        a write at once and applies none of it; we then sleep (releasing the GIL) and retry. After
        :data:`ROCKS_STALL_WAIT_S` of refusals the write is made blocking, so a commit always completes."""
        deadline = time.monotonic() + ROCKS_STALL_WAIT_S
        delay = 0.002
        while time.monotonic() < deadline:
            try:
                self.db.write(batch, self._sync_no_stall)
                return
            except Exception as exc:  # the binding raises a bare Exception carrying RocksDB's status text
                if "stall" not in str(exc).lower() and "incomplete" not in str(exc).lower():
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        self.db.write(batch, self._sync)

    def get_memory_bytes(self) -> dict[str, int]:
        """What RocksDB holds in memory, by part (RocksDB's own accounting): memtables of every table, the shared
        block cache (data, index and filter blocks) and its pinned part, and table readers' memory outside it."""
        views = self._get_distinct_views()

        def total(name: str) -> int:
            return sum(view.property_int_value(name) or 0 for view in views)

        return {"rocksdb_memtables": total("rocksdb.cur-size-all-mem-tables"),
                "rocksdb_block_cache": self.db.property_int_value("rocksdb.block-cache-usage") or 0,
                "rocksdb_block_cache_pinned": self.db.property_int_value("rocksdb.block-cache-pinned-usage") or 0,
                "rocksdb_table_readers": total("rocksdb.estimate-table-readers-mem")}

    def iter_from(self, table: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        yield from _iter_rocks(self._views[table].iter(self._bounded(table)), table, start)

    def _bounded(self, table: bytes) -> Any:
        opt = self._ReadOptions()
        opt.set_iterate_upper_bound(bytes([table[0] + 1]))
        return opt

    def snapshot(self) -> RocksSnapshot:
        return RocksSnapshot(self)

    def flush(self) -> None:
        """Make every batch written so far durable (every table's memtables to SST files)."""
        for view in self._get_distinct_views():
            view.flush(True)

    def _get_distinct_views(self) -> list[Any]:
        """One read handle per column family in use (every table's, or the default one alone)."""
        return list(self._views.values()) if self.split else [self.db]

    @property
    def is_bulk_load_order_free(self) -> bool:
        """True: writes land in a memtable and are sorted into SST files by flushes and compactions on
        RocksDB's own threads, so a bulk load needs no order (and no merge in Python)."""
        return True

    def write_sorted(self, table: bytes, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Bulk load of sorted items (an LSM tree takes any order; one batch)."""
        self.write([(table, k, v) for k, v in items])

    def catch_up(self) -> None:
        """A secondary: replay what the primary has written since the last catch-up (whole batches); open
        snapshots keep their view. The primary (read-write) always reads its own latest writes."""
        if self._secondary_dir is not None:
            self.db.try_catch_up_with_primary()

    def compact(self) -> None:
        """Compact the whole key space now: SST files are rewritten without deleted entries and their tombstones
        (background compactions do the same, in their own time)."""
        if self._secondary_dir is not None:
            raise RuntimeError("a read-only store cannot be compacted")
        for view in self._get_distinct_views():
            view.compact_range(None, None)

    def close(self) -> None:
        # The per-table handles hold the database open: dropped first, so the close releases its LOCK now.
        self._views, self._families = {}, {}
        self.db.close()
        self._remove_secondary_dir()

    def _remove_secondary_dir(self) -> None:
        if self._secondary_dir is not None:
            shutil.rmtree(self._secondary_dir, ignore_errors=True)
            self._secondary_dir = None


_ROCKS_ABSENT: Final = "key not found"
"""The text of the bare exception the binding's ``Snapshot`` raises for an absent key (rocksdict 0.3.29)."""


def _iter_rocks(it: Any, table: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
    it.seek(table + start)
    while it.valid():
        key = it.key()
        if not key.startswith(table):
            return
        yield key[1:], it.value()
        it.next()


class RocksSnapshot:
    """A point-in-time view: per table, a RocksDB snapshot for point reads and an iterator for scans.

    Point reads go through the binding's ``Snapshot`` (a ``Get`` at the snapshot's sequence number), which consults
    the bloom filters: an absent key — a new transaction's hash, the commonest read of a proposal's check — costs
    one filter probe per level. An iterator's ``seek`` cannot use them and reads an index and a data block per
    level instead (the read half of the proposal check took 2–3 % of a validator in a soak). Scans go through an
    iterator made with the snapshot, because the binding's ``Snapshot.iter()`` reads the latest data, not the
    snapshot's (measured, rocksdict 0.3.29).

    Snapshots and iterators are made one after the other, so they are one view only if no batch landed in
    between: the database's sequence number is read before and after, and they are made again until it did not
    move (a batch is one sequence range, so an unchanged number means no batch, whole or part, came in between)."""

    def __init__(self, engine: RocksEngine):
        db = engine.db
        while True:
            before = db.latest_sequence_number()
            snaps = {t: view.snapshot() for t, view in engine._views.items()}
            its = {t: view.iter() for t, view in engine._views.items()}
            if db.latest_sequence_number() == before:
                break
        self._snaps: dict[bytes, Any] | None = snaps
        self._its: dict[bytes, Any] | None = its

    def get(self, table: bytes, key: bytes) -> bytes | None:
        snaps = self._snaps
        if snaps is None:
            raise SnapshotClosed("read through a closed RocksDB snapshot")
        try:
            value: bytes = snaps[table][table + key]
        except Exception as exc:  # the binding's item access raises a bare Exception for an absent key
            if str(exc) == _ROCKS_ABSENT:
                return None
            raise
        return value

    def scan(self, table: bytes, start: bytes, end: bytes | None, limit: int | None = None,
             ) -> list[tuple[bytes, bytes]]:
        """Walk the snapshot's own iterator of the table (a new one would read a newer state)."""
        its = self._its
        if its is None:
            raise SnapshotClosed("read through a closed RocksDB snapshot")
        it = its[table]
        out: list[tuple[bytes, bytes]] = []
        stop = table + end if end is not None else bytes([table[0] + 1])
        it.seek(table + start)
        while it.valid() and (limit is None or len(out) < limit):
            key = it.key()
            if key >= stop:
                break
            out.append((key[1:], it.value()))
            it.next()
        return out

    def close(self) -> None:
        """Drop the snapshots and iterators (the binding releases what they pin when they are freed)."""
        self._snaps = self._its = None
