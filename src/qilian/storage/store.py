"""The node's database: blocks, commits, receipts, the transaction index and the state, in one key-value engine.

Durability
----------
A decided block, its commit, its receipts, its state writes and the new chain tip are written in ONE synced,
atomic batch (:meth:`ChainStore.process_commit_block`): after a SIGKILL or power loss at any moment the node
reopens at the last committed block, never between two (see :mod:`qilian.storage.engine` for how each engine
guarantees it).

Layout (store version 2)
------------------------
Every table is written append-friendly, so a block's commit costs the same after hours as in the first minute:

* ``m`` meta: ``genesis``, ``tip``, ``layout`` (the layout marker below);
* ``b`` / ``c`` / ``r``: block, commit, receipts by 8-byte big-endian height — appended in height order;
* ``h`` the height-ordered transaction index: ``height ‖ index`` (8 + 4 bytes) → transaction hash — appended;
* ``x`` the compact hash map: the first 8 bytes of a transaction hash → the 12-byte ``height ‖ index`` of every
  transaction with that prefix (almost always one). A lookup reads the candidates and confirms each against ``h``,
  so a prefix collision can never misplace a transaction; the map stays 8 + 12 bytes per transaction;
* ``n`` state-tree nodes under ``version ‖ hash`` (see :mod:`qilian.state.tree`): a block's nodes sort together
  at the end;
* ``p`` root pointers under the root hash (a store written before this table keeps them in ``n``, where reads
  and the pruner still find them);
* ``v`` flat state values by ``len(namespace) ‖ namespace ‖ key``, written in key order per block;
* ``g`` the governance index: ``v ‖ height`` for each height whose header names another validator set than the
  previous one's (its value: that set, encoded — so the light clients' validator path never needs the state of an
  old height, which a pruning node no longer keeps; empty in entries written before), ``g ‖ height ‖ index`` for
  each governance transaction (meta keeps ``gov_index_height`` and ``last_validators_hash``);
* ``s`` the stale index, kept only on a store that prunes (see "Pruning" below): ``since ‖ reference`` → empty
  for each tree node the state of version ``since`` no longer holds, ``since ‖ root hash`` → the replaced root's
  reference for each root pointer it no longer needs. Appended per block, deleted from the front.

A store made by state sync (:mod:`qilian.node.statesync`) has the same tables from the first block it holds, no
receipts up to its snapshot height, and meta ``state_sync`` (the record :mod:`qilian.node.snapshots` decodes).

``x`` and ``v`` are still keyed by hashes; on the RocksDB engine such a put is a log append and a memtable insert,
sorted in bulk later (each table in its own column family, so the appended ones are never rewritten by
compaction); on LMDB the batch is sorted into key order before it is written. RocksDB is the default: the
30-minute soaks that chose it are in docs/benchmarks.md.

No migration: a data directory of the earlier layout (LMDB, store version 1, no ``layout`` marker) is refused with
:class:`StoreLayoutError`; the node must be resynced from its peers into an empty data directory.

Pruning
-------
By default (``keep_states = 0``, archive) the tree keeps every version: any height's state can be proven. A store
opened with ``keep_states = N`` keeps the states of the last N versions (``tip − N + 1 … tip``; version v is the
state after block v, which header v + 1 commits). Each commit records, in the block's own batch, the stale index
entries :meth:`qilian.state.StateTree.compute_commit` reported; :meth:`ChainStore.process_prune` then deletes, in
batches of a given size, every node whose ``since ≤ tip − N + 1`` — a node replaced at version s belongs to
versions before s only, so it is unreachable from every retained root — and every recorded root pointer whose
value is still the replaced reference (a later version that reaches the same root hash again rewrites the pointer
with a reference of its own version, so a pointer a retained version uses is never deleted). Each prune batch also
records ``state_floor`` (versions below it are incomplete) and the position the next batch starts from, so a kill
between or during batches leaves a store whose retained versions are whole (a batch is atomic). Reads of a version
below :meth:`ChainStore.get_oldest_state_version` are refused by the read side, whatever the pruner has reached.
The stale index starts at the version where pruning was first enabled (``stale_since``); nodes replaced before it
(an archive node switched to pruning) are never deleted — resync into an empty directory to shed them. Which N is
safe is the node's rule (:mod:`qilian.node.pruning`).
"""

from __future__ import annotations

import contextlib
import struct
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Final

from qilian.storage.engine import KVEngine, KVSnapshot, LmdbEngine, Op, RocksEngine, get_disk_bytes
from qilian.storage.nodecache import NODE_CACHE_BYTES, NodeCache
from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import Block, BlockHeader, Commit, Genesis, Receipt, ValidatorSet, get_block_header_of_raw

LAYOUT: Final = b"qilian-store/3"
"""Layout marker stored under ``m/layout``; a store without it (or with another) is refused. Layout 3: a state-tree
internal node may name the paths of its children that are leaves (tags 3, 5 and 7 in :mod:`qilian.state.tree`,
"Encodings"), so a commit need not read the leaves it splits or replaces; layout 2 had tag 1 only."""
_UPGRADED_LAYOUTS: Final = (b"qilian-store/2",)
"""Older layouts this node reads as they are and marks as :data:`LAYOUT` when it opens them for writing: every
layout-2 entry is a valid layout-3 entry. The new marker keeps an older node from opening a store whose nodes it
would take for corrupt."""
ENGINES: Final = ("rocksdb", "lmdb")
"""Engine names :class:`ChainStore` accepts."""
DEFAULT_ENGINE: Final = "rocksdb"
"""The engine of a new data directory unless ``[store] engine`` says otherwise. RocksDB, by the 30-minute soaks
(docs/benchmarks.md): it holds half the bytes per transaction, so a validator's store stays in memory twice as
long, and it committed the most in the same time; LMDB is faster only while its file fits in the page cache. Its
cost: the binding holds the GIL through a synced write, so each commit pauses the node's other threads for the
write (tens of milliseconds)."""
TX_PREFIX_BYTES: Final = 8
"""Bytes of a transaction hash that key the compact hash map."""

_META, _BLOCKS, _COMMITS, _RECEIPTS, _TXS, _TXMAP, _NODES, _VALUES, _GOVINDEX, _STALE, _ROOTS = (
    b"m", b"b", b"c", b"r", b"h", b"x", b"n", b"v", b"g", b"s", b"p")
_ROOT_KEY_BYTES: Final = 32
"""A root pointer's key (a root hash); a tree node's key is a 40-byte reference."""
_U64 = struct.Struct(">Q")
_LOC = struct.Struct(">QI")
_LMDB_V1_FILE: Final = "data.mdb"
ROCKS_DIR: Final = "rocksdb"
"""Sub-directory of the data directory that holds the RocksDB files (the node keeps its consensus WAL beside it)."""


def _get_node_table(key: bytes) -> bytes:
    """Where an entry of the state tree's store lives: root pointers (keyed by a root hash, random) in their own
    table, tree nodes (keyed ``version ‖ hash``, appended block after block) in theirs. Kept apart so that the
    nodes' table is written in key order: one random key per block among them made every RocksDB file of nodes
    overlap every other, and compaction rewrote them all (docs/benchmarks.md, "A column family per table")."""
    return _ROOTS if len(key) == _ROOT_KEY_BYTES else _NODES


def _join_locations(a: bytes, b: bytes) -> bytes:
    """Two hash-map slots' ``height ‖ index`` locations as one, in chain order (as blocks committed one after
    another append them)."""
    both = a + b
    return b"".join(sorted(both[i:i + _LOC.size] for i in range(0, len(both), _LOC.size)))


def _height_key(height: int) -> bytes:
    return _U64.pack(height)


def compute_value_key(namespace: str, key: bytes) -> bytes:
    """Flat-table key of a state entry: length-prefixed namespace, then the key (no two pairs collide)."""
    ns = namespace.encode()
    return bytes([len(ns)]) + ns + key


def split_value_key(flat_key: bytes) -> tuple[str, bytes]:
    """(namespace, key) of a flat-table key (the inverse of :func:`compute_value_key`)."""
    n = flat_key[0]
    return flat_key[1:1 + n].decode(), flat_key[1 + n:]


class StoreCorrupt(Exception):
    """The database is not what Qilian wrote (edited by hand, or a different chain)."""


class StoreLayoutError(StoreCorrupt):
    """The data directory was written by another store layout (or engine); it is refused rather than misread."""


class StoreMissing(Exception):
    """A reader asked for a store that was never created (a reader must not create one: the node owns it)."""


@dataclass(frozen=True, slots=True)
class PruneStep:
    """What one :meth:`ChainStore.process_prune` batch did."""

    entries: int
    """Stale index entries consumed (each deleted, with its node or pointer when that was still due)."""
    nodes: int
    """Tree nodes deleted."""
    pointers: int
    """Root pointers deleted."""
    more: bool
    """Whether entries due for deletion may remain (the batch was full)."""


@dataclass(frozen=True, slots=True)
class ChainTip:
    """The last committed block and the results of executing it."""

    height: int
    """Height of the last committed block (0: none yet)."""
    block_id: bytes
    """Its ID (empty at height 0)."""
    time_ms: int
    """Its time (genesis time at height 0)."""
    state_root: bytes
    """State root after executing it."""
    receipts_root: bytes
    """Merkle root of its receipts."""

    def to_wire(self) -> list[Any]:
        return [self.height, self.block_id, self.time_ms, self.state_root, self.receipts_root]


def _decode_tip(raw: bytes | None) -> ChainTip:
    if raw is None:
        raise StoreCorrupt("store has no tip: not initialised")
    h, bid, t, sr, rr = decode_raw(raw)
    return ChainTip(h, bid, t, sr, rr)


def get_store_engine(path: Path) -> str | None:
    """Which engine wrote the data directory (None: empty or absent); refuses the store-v1 layout."""
    if (path / ROCKS_DIR / "CURRENT").exists():
        return "rocksdb"
    if (path / _LMDB_V1_FILE).exists():
        return "lmdb"
    return None


def _open_engine(path: Path, engine: str, readonly: bool, durable: bool = True) -> KVEngine:
    found = get_store_engine(path)
    if readonly and found is None:
        raise StoreMissing(f"{path} holds no chain store yet: start the node once (or initialise it)")
    if found is not None and found != engine:
        if found == "lmdb" and engine == "rocksdb":
            raise StoreLayoutError(
                f"{path} holds an LMDB store (store version 1, or version 2 on LMDB); this node uses the RocksDB "
                f"layout and does not migrate: move the data directory away and resync from peers")
        raise StoreLayoutError(f"{path} was written by the {found} engine, not {engine}")
    if engine == "rocksdb":
        return RocksEngine(path / ROCKS_DIR, readonly=readonly, durable=durable)
    if engine == "lmdb":
        return LmdbEngine(path, readonly=readonly, durable=durable)
    raise ValueError(f"unknown store engine {engine!r}; choose one of {', '.join(ENGINES)}")


class ChainStore:
    """Blocks and state in one key-value engine. Single writer (the node's commit path); any number of readers.

    ``readonly`` opens the store for a reader in another process — beside a running node or over a stopped one.
    On RocksDB that is a secondary instance whose view stays where it was until :meth:`catch_up` (see
    :mod:`qilian.storage.engine`); a reader that follows the chain calls it before each look for new heights."""

    def __init__(self, path: Path, readonly: bool = False, engine: str | None = None, keep_states: int = 0,
                 durable: bool = True, node_cache_bytes: int = NODE_CACHE_BYTES):
        """``engine``: None opens whatever engine wrote ``path`` (a new directory gets :data:`DEFAULT_ENGINE`); a
        name opens that engine and refuses a directory another engine wrote. ``keep_states``: how many recent
        state versions reads may use and the pruner keeps (0: all — an archive store); the node checks it against
        its floor (:mod:`qilian.node.pruning`) before it gets here. ``durable`` False: batches are not synced one
        by one, only by :meth:`process_flush` — for a state sync's staging store only, which is discarded unless
        it was completed and flushed. ``node_cache_bytes``: the budget of the in-memory cache of state-tree
        internal nodes (``[store] node_cache_mib``, :mod:`qilian.storage.nodecache`)."""
        if not readonly:
            path.mkdir(parents=True, exist_ok=True)
        if type(keep_states) is not int or keep_states < 0:
            raise ValueError(f"keep_states must be an integer ≥ 0 (0: keep every state), not {keep_states!r}")
        engine = engine or get_store_engine(path) or DEFAULT_ENGINE
        self.path = path
        self.engine_name = engine
        self.keep_states = keep_states
        """Recent state versions kept and readable (0: every version)."""
        self._prune_start: bytes | None = None
        """Where the next prune batch's scan of the stale index starts (None: not read from meta yet)."""
        self.kv = _open_engine(path, engine, readonly, durable)
        self.node_cache = NodeCache(node_cache_bytes)
        """Tree nodes this store wrote or read lately (:mod:`qilian.storage.nodecache`); snapshots share it."""
        self._snapshots: weakref.WeakSet[StoreSnapshot] = weakref.WeakSet()
        """Snapshots not closed yet: :meth:`close` ends them (an open RocksDB iterator keeps the database and its
        LOCK open after ``close``, and a reopen in the same process would then fail)."""
        self._snapshots_lock = threading.Lock()
        try:
            self._check_layout(readonly)
        except BaseException:
            self.kv.close()
            raise

    def _check_layout(self, readonly: bool) -> None:
        layout = self.kv.get(_META, b"layout")
        if layout == LAYOUT:
            return
        if layout in _UPGRADED_LAYOUTS:
            if not readonly:
                self.kv.write([(_META, b"layout", LAYOUT)])
            return
        if layout is not None:
            raise StoreLayoutError(f"{self.path} has store layout {layout!r}; this node reads {LAYOUT!r} only")
        if self._is_lmdb_v1():
            raise StoreLayoutError(
                f"{self.path} holds a store of the old layout (store version 1: hash-keyed LMDB tables); this "
                f"version does not read or migrate it: move the data directory away and resync from peers")
        if self.kv.get(_META, b"genesis") is not None:
            raise StoreLayoutError(f"{self.path} has a genesis but no layout marker: not a Qilian store v2")

    def _is_lmdb_v1(self) -> bool:
        """Store v1 kept its tables in LMDB sub-databases named ``meta``, ``blocks``… in the main database."""
        if not isinstance(self.kv, LmdbEngine):
            return False
        with self.kv.env.begin() as txn:
            return txn.get(b"meta") is not None or txn.get(b"blocks") is not None

    def close(self) -> None:
        """End the snapshots still open (reads through them then raise ``SnapshotClosed``), then close the engine."""
        with self._snapshots_lock:
            snapshots = list(self._snapshots)
        for snap in snapshots:
            snap.close()
        self.node_cache.clear()
        self.kv.close()

    def catch_up(self) -> None:
        """A read-only store: see what the writer has committed since the open or the last catch-up (whole
        blocks only). A no-op for the writer, which always reads its own latest batch, and on LMDB."""
        self.kv.catch_up()

    def get_memory_bytes(self) -> dict[str, int]:
        """Memory the store holds, by part: the node cache (estimated) and, on RocksDB, the engine's own parts
        (:meth:`qilian.storage.engine.RocksEngine.get_memory_bytes`). LMDB has none of its own: its pages are the
        kernel's page cache (they count in the process's RSS as mapped file pages)."""
        parts = {"node_cache": self.node_cache.get_estimated_bytes()}
        if isinstance(self.kv, RocksEngine):
            parts.update(self.kv.get_memory_bytes())
        return parts

    def get_disk_bytes(self) -> int:
        """Bytes the store takes on disk."""
        return get_disk_bytes(self.path)

    # -- genesis and tip ---------------------------------------------------------------------------------

    def process_init(self, genesis: Genesis, tip: ChainTip,
                     state_writes: Mapping[tuple[str, bytes], bytes | None] | None = None,
                     new_nodes: Mapping[bytes, bytes] | None = None) -> None:
        """Record genesis (and the genesis state: system contracts) on a fresh store, or check that an existing
        store is for the same genesis."""
        encoded = genesis.encode()
        have = self.kv.get(_META, b"genesis")
        if have is not None:
            if have != encoded:
                raise StoreCorrupt(f"the database in {self.path} belongs to a different genesis")
            return
        ops: list[Op] = [(_get_node_table(h), h, node) for h, node in sorted((new_nodes or {}).items())]
        ops += [(_VALUES, compute_value_key(ns, key), value)
                for (ns, key), value in sorted((state_writes or {}).items()) if value is not None]
        ops += [(_META, b"genesis", encoded), (_META, b"tip", encode_trusted(tip.to_wire())),
                (_META, b"layout", LAYOUT)]
        self.kv.write(ops)

    def get_genesis(self) -> Genesis | None:
        """The genesis this store was initialised with."""
        raw = self.kv.get(_META, b"genesis")
        return None if raw is None else Genesis.decode(raw)

    def get_tip(self) -> ChainTip:
        """The last committed block's summary."""
        return _decode_tip(self.kv.get(_META, b"tip"))

    # -- the one write path ------------------------------------------------------------------------------

    def process_commit_block(
        self,
        block: Block,
        commit: Commit,
        tx_hashes: Sequence[bytes],
        receipts: Sequence[Receipt],
        state_writes: Mapping[tuple[str, bytes], bytes | None],
        new_nodes: Mapping[bytes, bytes],
        tip: ChainTip,
        gov_positions: Sequence[int] = (),
        stale_nodes: Iterable[bytes] = (),
        replaced_root: bytes | None = None,
        validators: ValidatorSet | None = None,
        receipts_bytes: bytes = b"",
    ) -> None:
        """Persist a decided and executed block atomically and durably (one synced batch), with its entries of the
        governance index (``gov_positions``: indexes of its governance transactions) and — on a store that keeps
        the stale index (:meth:`is_recording_stale`) — the tree nodes and the root this block's state replaced
        (``stale_nodes``, ``replaced_root``: :class:`qilian.state.StateCommit`). ``validators``: the set that signs
        this block, kept in the governance index when it differs from the previous block's. ``receipts_bytes``:
        the canonical encoding of ``receipts`` when the caller already has it (execution made it), so a full
        block's receipts are not encoded again here. Single writer: the reads here (tip, colliding hash prefixes,
        the last validator-set hash) cannot race another commit."""
        height = block.header.height
        current = self.get_tip().height
        if current + 1 != height:
            raise StoreCorrupt(f"committing block {height} on top of {current}")
        hk = _height_key(height)
        ops: list[Op] = [(_BLOCKS, hk, block.encode()), (_COMMITS, hk, commit.encode()),
                         (_RECEIPTS, hk, receipts_bytes or encode_trusted([r.to_wire() for r in receipts]))]
        ops += [(_TXS, hk + struct.pack(">I", i), th) for i, th in enumerate(tx_hashes)]
        ops += self._compute_txmap_ops(hk, tx_hashes)
        # Unsorted on purpose: RocksDB's memtable sorts; the LMDB engine sorts a batch into key order itself. The
        # tens of thousands of nodes go in by one C-level zip; the root pointer (the only shorter key) goes apart.
        pointers = [ref for ref in new_nodes if len(ref) == _ROOT_KEY_BYTES]
        if pointers:
            new_nodes = dict(new_nodes)
            ops += [(_get_node_table(ref), ref, new_nodes.pop(ref)) for ref in pointers]
        ops += zip(repeat(_NODES), new_nodes.keys(), new_nodes.values())
        ops += [(_VALUES, compute_value_key(ns, key), value) for (ns, key), value in state_writes.items()]
        ops += self._compute_index_ops(height, block.header.validators_hash, gov_positions,
                                       self.kv.get(_META, b"last_validators_hash"), validators)
        stale_nodes = tuple(stale_nodes)  # read twice: the stale index and the node cache
        if self.is_recording_stale():
            ops += [(_STALE, hk + ref, b"") for ref in stale_nodes]
            if replaced_root is not None:
                ops.append((_STALE, hk + replaced_root[8:], replaced_root))
        ops.append((_META, b"tip", encode_trusted(tip.to_wire())))
        self.kv.write(ops)
        # The next block reads the upper levels of these paths again, and never the nodes they replaced.
        self.node_cache.discard_many(stale_nodes)
        if replaced_root is not None:
            self.node_cache.discard_many((replaced_root,))
        self.node_cache.add_many(new_nodes.items())

    def _compute_txmap_ops(self, hk: bytes, tx_hashes: Sequence[bytes]) -> list[Op]:
        """Hash-map entries of a block's transactions, merged with any earlier transaction of the same prefix."""
        entries: dict[bytes, bytes] = {}
        for i, th in enumerate(tx_hashes):
            prefix = th[:TX_PREFIX_BYTES]
            entries[prefix] = entries.get(prefix, b"") + hk + struct.pack(">I", i)
        prefixes = sorted(entries)
        for prefix, old in zip(prefixes, self.kv.get_many(_TXMAP, prefixes), strict=True):
            if old is not None:
                entries[prefix] = old + entries[prefix]
        return [(_TXMAP, p, entries[p]) for p in prefixes]

    @staticmethod
    def _compute_index_ops(height: int, validators_hash: bytes, gov_positions: Iterable[int],
                           last_validators_hash: bytes | None, validators: ValidatorSet | None = None) -> list[Op]:
        """The governance index entries of one block: ``v ‖ height`` when its header names another validator set
        than the previous header (with that set when the caller has it), ``g ‖ height ‖ index`` per governance
        transaction — so the validator path and the history export read O(changes) entries, never every header."""
        hk = _height_key(height)
        ops: list[Op] = []
        if height >= 2 and last_validators_hash is not None and last_validators_hash != validators_hash:
            ops.append((_GOVINDEX, b"v" + hk, b"" if validators is None else validators.encode()))
        ops.append((_META, b"last_validators_hash", validators_hash))
        ops += [(_GOVINDEX, b"g" + hk + struct.pack(">I", i), b"") for i in gov_positions]
        ops.append((_META, b"gov_index_height", hk))
        return ops

    def get_index_height(self) -> int:
        """The height through which the governance index is complete (0: none; a database written before it
        existed is backfilled by :meth:`process_index_backfill`)."""
        raw = self.kv.get(_META, b"gov_index_height")
        return 0 if raw is None else _U64.unpack(raw)[0]

    def process_index_backfill(self, get_gov_positions: Any, batch: int = 1000) -> int:
        """Index the blocks the governance index lacks (a database from before it), ``batch`` blocks per batch;
        ``get_gov_positions(block)`` names a block's governance transactions. Runs on the commit path's side of
        the single writer (at start, before consensus): blocks stored later are indexed at commit. Returns how
        many blocks were indexed."""
        done = 0
        while True:
            start = self.get_index_height() + 1
            tip = self.get_tip().height
            if start > tip:
                return done
            ops: list[Op] = []
            last = self.kv.get(_META, b"last_validators_hash")
            for h in range(start, min(tip, start + batch - 1) + 1):
                raw = self.kv.get(_BLOCKS, _height_key(h))
                if raw is None:
                    raise StoreCorrupt(f"block {h} is missing below the tip {tip}")
                block = Block.decode(raw)
                ops += self._compute_index_ops(h, block.header.validators_hash, get_gov_positions(block), last)
                last = block.header.validators_hash
                done += 1
            self.kv.write(ops)

    # -- pruning -----------------------------------------------------------------------------------------

    def is_recording_stale(self) -> bool:
        """Whether commits record the stale index (pruning was enabled on this store once: it stays on, so the
        index never has a gap)."""
        return self.kv.get(_META, b"stale_since") is not None

    def process_enable_stale_index(self) -> int:
        """Start recording the stale index from the next block on (a no-op when it is recorded already); returns
        the first version it covers. The pruner can delete only what the index names, so nodes replaced before
        that version stay (see the module docstring)."""
        raw = self.kv.get(_META, b"stale_since")
        if raw is not None:
            return int(_U64.unpack(raw)[0])
        since = self.get_tip().height + 1
        self.kv.write([(_META, b"stale_since", _U64.pack(since))])
        return since

    def get_state_floor(self) -> int:
        """The lowest version the pruner has left whole (0: nothing pruned); versions below it are incomplete."""
        raw = self.kv.get(_META, b"state_floor")
        return 0 if raw is None else int(_U64.unpack(raw)[0])

    def get_oldest_state_version(self) -> int:
        """The oldest state version reads may use: the last ``keep_states`` versions, and never below what was
        pruned already (a store pruned before and opened with a larger ``keep_states``, or as an archive)."""
        return compute_oldest_state_version(self.get_tip().height, self.keep_states, self.get_state_floor())

    def process_prune(self, max_entries: int) -> PruneStep:
        """Delete at most ``max_entries`` stale index entries that are due — ``since ≤ tip − keep_states + 1`` —
        with their nodes, and the recorded root pointers still holding the replaced reference, in ONE synced
        batch that also records ``state_floor`` and where the next batch starts. A no-op on an archive store.
        Single writer: call it on the commit path's thread, between commits (the node does, after each block)."""
        if max_entries < 1:
            raise ValueError("a prune batch deletes at least one entry")
        if self.keep_states == 0:
            return PruneStep(0, 0, 0, False)
        tip = self.get_tip().height
        bound = tip - self.keep_states + 1
        if bound < 1:
            return PruneStep(0, 0, 0, False)
        if self._prune_start is None:
            self._prune_start = self.kv.get(_META, b"prune_next") or b""
        snap = self.kv.snapshot()
        try:
            rows = snap.scan(_STALE, self._prune_start, _height_key(bound + 1), max_entries)
        finally:
            snap.close()
        if not rows:  # nothing due: no write and no fsync (the floor need only cover what was deleted)
            return PruneStep(0, 0, 0, False)
        floor = max(self.get_state_floor(), bound)
        ops: list[Op] = []
        nodes = pointers = 0
        for key, expected in rows:
            ops.append((_STALE, key, None))
            if not expected:  # a node: since ‖ reference
                ops.append((_NODES, key[8:], None))
                nodes += 1
            else:  # a root pointer: deleted unless a later version rewrote it
                table = _find_root_pointer_table(self.kv.get, key[8:])
                if table is not None and self.kv.get(table, key[8:]) == expected:
                    ops.append((table, key[8:], None))
                    pointers += 1
        nxt = rows[-1][0] + b"\x00"
        ops += [(_META, b"state_floor", _U64.pack(floor)), (_META, b"prune_next", nxt)]
        self.kv.write(ops)
        self._prune_start = nxt
        return PruneStep(len(rows), nodes, pointers, len(rows) == max_entries)

    def process_compact(self) -> None:
        """Give the space of pruned entries back to the file system (offline: the node and every reader stopped;
        :meth:`qilian.storage.engine.LmdbEngine.compact` says why LMDB needs a rewrite for it). Open snapshots
        are ended first."""
        with self._snapshots_lock:
            snapshots = list(self._snapshots)
        for snap in snapshots:
            snap.close()
        self.kv.compact()

    # -- reads -------------------------------------------------------------------------------------------

    def get_block_bytes(self, height: int) -> bytes | None:
        """Encoded block at a height."""
        return self.kv.get(_BLOCKS, _height_key(height))

    def get_block(self, height: int) -> Block | None:
        """Block at a height, or None."""
        raw = self.get_block_bytes(height)
        return None if raw is None else Block.decode(raw)

    def get_block_header(self, height: int) -> BlockHeader | None:
        """Header of the block at a height (its transactions are not decoded), or None."""
        raw = self.get_block_bytes(height)
        return None if raw is None else get_block_header_of_raw(raw)

    def get_commit(self, height: int) -> Commit | None:
        """Commit (precommit signatures) that decided the block at a height."""
        raw = self.kv.get(_COMMITS, _height_key(height))
        return None if raw is None else Commit.decode(raw)

    def get_receipts(self, height: int) -> list[Receipt] | None:
        """Receipts of the block at a height."""
        raw = self.get_receipts_bytes(height)
        return None if raw is None else [Receipt.from_decoded(r) for r in decode_raw(raw)]

    def get_receipts_bytes(self, height: int) -> bytes | None:
        """Encoded receipts list of the block at a height."""
        return self.kv.get(_RECEIPTS, _height_key(height))

    def get_tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, index) of a committed transaction."""
        return _find_location(self.kv.get, tx_hash)

    def is_tx_committed(self, tx_hash: bytes) -> bool:
        """True iff a transaction with this hash is on chain."""
        return self.get_tx_location(tx_hash) is not None

    def get_committed(self, tx_hashes: Iterable[bytes]) -> set[bytes]:
        """The hashes among ``tx_hashes`` that are on chain (batched reads: the mempool asks per incoming batch)."""
        hashes = list(tx_hashes)
        slots = self.kv.get_many(_TXMAP, [h[:TX_PREFIX_BYTES] for h in hashes])
        candidates = [(h, s[i:i + _LOC.size]) for h, s in zip(hashes, slots, strict=True) if s is not None
                      for i in range(0, len(s), _LOC.size)]
        stored = self.kv.get_many(_TXS, [loc for _, loc in candidates])
        return {h for (h, _), have in zip(candidates, stored, strict=True) if have == h}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        """Current (after the tip) value of a state key."""
        return self.kv.get(_VALUES, compute_value_key(namespace, key))

    def get_node(self, node_hash: bytes) -> bytes | None:
        """A state-tree node by reference, or a root pointer by root hash (the NodeStore of qilian.state)."""
        return _get_node_cached(self.node_cache, self.kv.get, node_hash)

    def iter_raw_blocks(self, start: int = 1) -> Iterator[tuple[int, bytes]]:
        """(height, encoded block) in height order from ``start``."""
        for k, v in self.kv.iter_from(_BLOCKS, _height_key(start)):
            yield _U64.unpack(k)[0], v

    def iter_tx_hashes(self, start: int = 1) -> Iterator[tuple[int, int, bytes]]:
        """(height, index, transaction hash) in chain order from height ``start`` (the height-ordered index)."""
        for k, v in self.kv.iter_from(_TXS, _height_key(start)):
            height, index = _LOC.unpack(k)
            yield height, index, v

    def iter_state_values(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (flat key, value) of the current state, in key order."""
        yield from self.kv.iter_from(_VALUES, b"")

    def count_state_values(self) -> int:
        """Number of live state keys (a scan: O(state size); for tools, not the commit path)."""
        return sum(1 for _ in self.kv.iter_from(_VALUES, b""))

    # -- state sync: installing a verified snapshot into a fresh store ----------------------------------------
    # A joining node builds its store in a separate directory from verified parts only (qilian.node.statesync),
    # and swaps it in once complete: no write here ever lands in a store a node runs on, and until
    # process_install_finish the directory holds no genesis, no tip and no layout marker, so nothing opens it
    # as a chain.

    def process_install_blocks(self, items: Sequence[tuple[int, bytes, Commit, Sequence[bytes], Sequence[int]]],
                               ) -> None:
        """Write verified blocks of the replay window with their commits, their height-ordered transaction index
        and their governance-index transaction entries (height, encoded block, commit, body hashes, governance
        positions), in one batch; no receipts (they were never executed here). Any order of heights. The hash
        map (``x``) entries are not written here: :meth:`compute_install_txmap` makes them for a bulk load."""
        ops: list[Op] = []
        for height, raw, commit, tx_hashes, gov_positions in items:
            hk = _height_key(height)
            ops += [(_BLOCKS, hk, raw), (_COMMITS, hk, commit.encode())]
            ops += [(_TXS, hk + struct.pack(">I", i), th) for i, th in enumerate(tx_hashes)]
            ops += [(_GOVINDEX, b"g" + hk + struct.pack(">I", i), b"") for i in gov_positions]
        self.kv.write(ops)

    @staticmethod
    def compute_install_txmap(items: Iterable[tuple[int, Sequence[bytes]]]) -> dict[bytes, bytes]:
        """Hash-map entries (prefix → ``height ‖ index`` locations) of (height, body hashes) pairs; entries of one
        prefix from several loads are joined by concatenation (:meth:`process_install_sorted`)."""
        merged: dict[bytes, bytes] = {}
        for height, tx_hashes in items:
            hk = _height_key(height)
            for i, th in enumerate(tx_hashes):
                p = th[:TX_PREFIX_BYTES]
                merged[p] = merged.get(p, b"") + hk + struct.pack(">I", i)
        return merged

    def process_install_sorted(self, kind: str, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Bulk-load sorted entries into an empty table of a store being installed — ``kind``: ``nodes`` (tree
        nodes by reference), ``values`` (flat state by :func:`compute_value_key`) or ``txmap`` (hash-map
        entries): in key order, appended, so a B-tree is filled page by page instead of rewriting random pages
        batch after batch (measured: the difference between minutes and seconds at a million keys)."""
        table = {"nodes": _NODES, "values": _VALUES, "txmap": _TXMAP}[kind]
        self.kv.write_sorted(table, items)

    def process_install_unsorted(self, kind: str, items: Mapping[bytes, bytes]) -> None:
        """Load entries of ``kind`` (as :meth:`process_install_sorted`) in any order, in one batch — for an engine
        whose bulk load needs no order (:attr:`KVEngine.is_bulk_load_order_free`). Nodes and values: each key must
        arrive once with its final value (a later write would replace an earlier one). Hash-map entries are joined
        with the locations the table already holds for their prefix (one batched read), as the merge of sorted
        runs joins them."""
        if kind == "txmap":
            keys = list(items)
            held = self.kv.get_many(_TXMAP, keys)
            self.kv.write([(_TXMAP, k, items[k] if old is None else _join_locations(old, items[k]))
                           for k, old in zip(keys, held, strict=True)])
            return
        table = {"nodes": _NODES, "values": _VALUES}[kind]
        self.kv.write([(table, k, v) for k, v in items.items()])

    def process_install_finish(self, genesis: Genesis, tip: ChainTip, top_nodes: Mapping[bytes, bytes],
                               record: bytes, validator_change_heights: Sequence[int],
                               last_validators_hash: bytes) -> None:
        """Make the installed store a chain: the top of the state tree, genesis, the tip (the snapshot's block),
        the state-sync record (:meth:`get_state_sync_record`), the governance index's validator-change entries of
        the window and its meta, and the layout marker — one batch, so the store is a chain or is not."""
        if self.kv.get(_META, b"genesis") is not None:
            raise StoreCorrupt(f"{self.path} already holds a chain: a snapshot installs into a fresh store only")
        ops: list[Op] = [(_get_node_table(ref), ref, node) for ref, node in top_nodes.items()]
        ops += [(_GOVINDEX, b"v" + _height_key(h), b"") for h in validator_change_heights]
        ops += [(_META, b"genesis", genesis.encode()), (_META, b"tip", encode_trusted(tip.to_wire())),
                (_META, b"state_sync", record), (_META, b"last_validators_hash", last_validators_hash),
                (_META, b"gov_index_height", _height_key(tip.height)), (_META, b"layout", LAYOUT)]
        self.kv.write(ops)

    def process_flush(self) -> None:
        """Make every batch written so far durable (for a store opened with ``durable=False``)."""
        self.kv.flush()

    def get_state_sync_record(self) -> bytes | None:
        """The record a state-synced store keeps of its snapshot (qilian.node.statesync decodes it), or None for
        a store that holds the chain from genesis."""
        return self.kv.get(_META, b"state_sync")

    # -- snapshots ---------------------------------------------------------------------------------------

    def begin_reads(self) -> contextlib.AbstractContextManager[StoreSnapshot | ChainStore]:
        """A view for a run of point reads (a block's execution and state-tree update, an admission batch's
        checks), whichever is cheaper on the engine: on LMDB a snapshot — one read transaction instead of one per
        read; on RocksDB the live store — its point gets use the SST files' bloom filters, which a snapshot's
        iterator seeks cannot (measured: a block's tree reads through the iterator grew to 20 s while level-0
        files piled up between compactions). So the reads agree with each other only where nothing commits
        meanwhile: on the store's one writer between its batches (execution), or where a stale read is harmless
        (admission, which the block rules re-check); use :meth:`begin_snapshot` for one view under commits."""
        if isinstance(self.kv, LmdbEngine):
            return self.begin_snapshot()
        return contextlib.nullcontext(self)

    def begin_snapshot(self) -> StoreSnapshot:
        """A consistent read view: every read through it sees the chain at one tip, whatever commits meanwhile.
        Use it as a context manager; it must be closed."""
        snap = StoreSnapshot(self)
        with self._snapshots_lock:
            self._snapshots.add(snap)
        return snap


def compute_oldest_state_version(tip: int, keep_states: int, floor: int) -> int:
    """The oldest state version a store at ``tip`` may read: ``tip − keep_states + 1`` (0 with ``keep_states``
    0: every version), and never below ``floor``, the version the pruner has left whole."""
    return max(floor, tip - keep_states + 1 if keep_states else 0, 0)


def _compute_prefix_end(prefix: bytes) -> bytes | None:
    """The first key after every key that starts with ``prefix`` (None: no such key, scan to the table's end)."""
    p = prefix.rstrip(b"\xff")
    return None if not p else p[:-1] + bytes([p[-1] + 1])


def _find_location(get: Callable[[bytes, bytes], bytes | None], tx_hash: bytes) -> tuple[int, int] | None:
    """Look a hash up in the compact map and confirm each candidate against the height-ordered index."""
    slots = get(_TXMAP, tx_hash[:TX_PREFIX_BYTES])
    if slots is None:
        return None
    for i in range(0, len(slots), _LOC.size):
        loc = slots[i:i + _LOC.size]
        if get(_TXS, loc) == tx_hash:
            height, index = _LOC.unpack(loc)
            return height, index
    return None


def _get_node_cached(cache: NodeCache, get: Callable[[bytes, bytes], bytes | None], ref: bytes) -> bytes | None:
    """A node from the cache, else from ``get`` (the engine or a snapshot of it), remembered for next time; or a
    root pointer (never cached: a later version may rewrite it)."""
    if len(ref) == _ROOT_KEY_BYTES:
        pointer = get(_ROOTS, ref)
        return pointer if pointer is not None else get(_NODES, ref)  # a store from before the roots' table
    node = cache.get(ref)
    if node is None:
        node = get(_NODES, ref)
        if node is not None:
            cache.add(ref, node)
    return node


def _find_root_pointer_table(get: Callable[[bytes, bytes], bytes | None], root: bytes) -> bytes | None:
    """The table holding a root pointer: its own, or — in a store written before root pointers had one — the
    nodes' table; None when neither has it."""
    if get(_ROOTS, root) is not None:
        return _ROOTS
    return _NODES if get(_NODES, root) is not None else None


class StoreSnapshot:
    """Reads of one engine snapshot, so a query that reads a block, its commit, the next block and state nodes
    never mixes two heights — and the consensus shell's view of the chain (``NodeLedger`` in
    :mod:`qilian.node.consensus`) sees exactly the blocks it was told of. Short-lived (a query, or one block's
    time for the shell's view): an open snapshot pins the data it sees."""

    def __init__(self, store: ChainStore):
        self._snap: KVSnapshot = store.kv.snapshot()
        self._keep_states = store.keep_states
        self._node_cache = store.node_cache

    def __enter__(self) -> StoreSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the snapshot."""
        self._snap.close()

    def get_tip(self) -> ChainTip:
        """The tip as of the snapshot."""
        return _decode_tip(self._snap.get(_META, b"tip"))

    def get_block_bytes(self, height: int) -> bytes | None:
        """Encoded block at a height, or None."""
        return self._snap.get(_BLOCKS, _height_key(height))

    def get_block(self, height: int) -> Block | None:
        """Block at a height, or None."""
        raw = self.get_block_bytes(height)
        return None if raw is None else Block.decode(raw)

    def get_block_header(self, height: int) -> BlockHeader | None:
        """Header of the block at a height (its transactions are not decoded), or None."""
        raw = self.get_block_bytes(height)
        return None if raw is None else get_block_header_of_raw(raw)

    def get_block_tx_hashes(self, height: int) -> list[bytes]:
        """Hashes of the block's transactions in block order, from the height-ordered index (no block decode);
        empty for a height the store holds no block of."""
        return [v for _, v in self._snap.scan(_TXS, _height_key(height), _height_key(height + 1))]

    def get_receipt_statuses(self, height: int) -> list[int] | None:
        """Status of each receipt of the block at a height, or None: the receipts list decoded, but no Receipt
        built (the bytes are the store's own, written from typed receipts)."""
        raw = self._snap.get(_RECEIPTS, _height_key(height))
        return None if raw is None else [r[1] for r in decode_raw(raw)]

    def get_commit(self, height: int) -> Commit | None:
        """Commit of the block at a height, or None."""
        raw = self._snap.get(_COMMITS, _height_key(height))
        return None if raw is None else Commit.decode(raw)

    def get_receipts(self, height: int) -> list[Receipt] | None:
        """Receipts of the block at a height, or None."""
        raw = self._snap.get(_RECEIPTS, _height_key(height))
        return None if raw is None else [Receipt.from_decoded(r) for r in decode_raw(raw)]

    def get_tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, index) of a committed transaction."""
        return _find_location(self._snap.get, tx_hash)

    def get_committed(self, tx_hashes: Iterable[bytes]) -> set[bytes]:
        """The hashes among ``tx_hashes`` on chain as of the snapshot (replay checks of the next block)."""
        get = self._snap.get
        return {h for h in tx_hashes if _find_location(get, h) is not None}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        """Value of a state key after the snapshot's tip."""
        return self._snap.get(_VALUES, compute_value_key(namespace, key))

    def get_state_page(self, namespace: str, prefix: bytes, after: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` (key, value) pairs of the state after the snapshot's tip whose key starts with
        ``prefix`` and sorts after ``after`` ("" for the first page), in key order. The flat table is sorted by
        namespace then key, so a listing (the holders of an asset) is one cursor walk, not a scan of the tree."""
        if limit <= 0:
            return []
        base = compute_value_key(namespace, b"")
        first = base + prefix
        start = base + after + b"\x00" if after else first
        rows = self._snap.scan(_VALUES, start, _compute_prefix_end(first), limit)
        return [(k[len(base):], v) for k, v in rows]

    def iter_namespace(self, namespace: str, limit: int) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of a state namespace after the snapshot's tip, in key order, at most ``limit``."""
        yield from self.get_state_page(namespace, b"", b"", limit)

    def get_node(self, node_hash: bytes) -> bytes | None:
        """A state-tree node (the NodeStore interface), as of the snapshot (a node's bytes are the same in every
        view, so the store's node cache answers for snapshots too)."""
        return _get_node_cached(self._node_cache, self._snap.get, node_hash)

    def get_oldest_state_version(self) -> int:
        """The oldest state version readable in this snapshot (see :meth:`ChainStore.get_oldest_state_version`):
        every version from it to the snapshot's tip is whole here, whatever the pruner does meanwhile."""
        raw = self._snap.get(_META, b"state_floor")
        floor = 0 if raw is None else int(_U64.unpack(raw)[0])
        return compute_oldest_state_version(self.get_tip().height, self._keep_states, floor)

    def get_changed_validator_set(self, height: int) -> ValidatorSet | None:
        """The set that signs ``height`` as the governance index recorded it at a change of set, or None (no
        change at that height, or an entry written before the index kept sets: read the state then)."""
        raw = self._snap.get(_GOVINDEX, b"v" + _height_key(height))
        return ValidatorSet.decode(raw) if raw else None

    def get_value_page(self, after: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` (flat key, value) pairs of the whole state after the snapshot's tip, in flat-key order,
        starting after the flat key ``after`` (b"" for the first page): a state-sync server scans its state in
        pages, never holding it all."""
        start = after + b"\x00" if after else b""
        return self._snap.scan(_VALUES, start, None, limit)

    def get_flat_values(self, flat_keys: Sequence[bytes]) -> list[bytes | None]:
        """Values of the state after the snapshot's tip by flat key (:func:`compute_value_key`)."""
        get = self._snap.get
        return [get(_VALUES, k) for k in flat_keys]

    def get_validator_change_heights(self, up_to: int) -> list[int]:
        """Heights 2..``up_to`` whose header names another validator set than the previous header (the
        governance index: O(changes), not a scan of the headers)."""
        rows = self._snap.scan(_GOVINDEX, b"v", b"v" + _height_key(up_to + 1))
        return [_U64.unpack(k[1:9])[0] for k, _ in rows]

    def iter_gov_positions(self, start: int, index: int, stop: int) -> Iterator[tuple[int, int]]:
        """(height, index) of the governance transactions from (``start``, ``index``) through height ``stop``,
        in chain order (the governance index)."""
        rows = self._snap.scan(_GOVINDEX, b"g" + _height_key(start) + struct.pack(">I", index),
                               b"g" + _height_key(stop + 1))
        for k, _ in rows:
            yield _U64.unpack(k[1:9])[0], struct.unpack(">I", k[9:13])[0]
