"""The node's database: one LMDB environment holding blocks, commits, receipts, the tx index and the state.

A decided block, its commit, its receipts, its state writes and the new chain tip are written in ONE synced LMDB
write transaction (:meth:`ChainStore.process_commit_block`). LMDB's copy-on-write B-tree never overwrites live
pages and publishes a transaction by one meta-page write after the data is synced, so after a SIGKILL or power
loss at any moment the node reopens at the last committed block, never between two.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import lmdb

from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import Block, Commit, Genesis, Receipt

DEFAULT_MAP_SIZE: Final = 64 * 1024**3
"""LMDB map size: the most the database may grow to (a sparse reservation, not disk use)."""

_U64 = struct.Struct(">Q")


def _height_key(height: int) -> bytes:
    return _U64.pack(height)


def compute_value_key(namespace: str, key: bytes) -> bytes:
    """Flat-table key of a state entry: length-prefixed namespace, then the key (no two pairs collide)."""
    ns = namespace.encode()
    return bytes([len(ns)]) + ns + key


class StoreCorrupt(Exception):
    """The database is not what Qilian wrote (edited by hand, or a different chain)."""


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


class ChainStore:
    """Blocks and state in LMDB. Single writer (the node's commit path); any number of readers."""

    def __init__(self, path: Path, map_size: int = DEFAULT_MAP_SIZE, readonly: bool = False):
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=16,
            sync=True,
            metasync=True,
            readonly=readonly,
            lock=True,
            max_readers=256,
        )
        self._meta = self.env.open_db(b"meta")
        self._blocks = self.env.open_db(b"blocks")
        self._commits = self.env.open_db(b"commits")
        self._receipts = self.env.open_db(b"receipts")
        self._txindex = self.env.open_db(b"txindex")
        self._nodes = self.env.open_db(b"state_nodes")
        self._values = self.env.open_db(b"state_values")
        self._govindex = self.env.open_db(b"gov_index")
        """Governance index, maintained at commit: ``v`` ‖ height for each height whose header names another
        validator set than the previous one's, ``g`` ‖ height ‖ index for each governance transaction — so the
        validator path and the history export read O(changes) entries, never every header."""

    def close(self) -> None:
        """Close the environment."""
        self.env.close()

    # -- genesis and tip ---------------------------------------------------------------------------------

    def process_init(self, genesis: Genesis, tip: ChainTip,
                     state_writes: Mapping[tuple[str, bytes], bytes | None] | None = None,
                     new_nodes: Mapping[bytes, bytes] | None = None) -> None:
        """Record genesis (and the genesis state: system contracts) on a fresh store, or check that an existing
        store is for the same genesis."""
        encoded = genesis.encode()
        with self.env.begin(write=True) as txn:
            have = txn.get(b"genesis", db=self._meta)
            if have is None:
                txn.put(b"genesis", encoded, db=self._meta)
                txn.put(b"tip", encode_trusted(tip.to_wire()), db=self._meta)
                for h, node in sorted((new_nodes or {}).items()):
                    txn.put(h, node, db=self._nodes)
                for (ns, key), value in sorted((state_writes or {}).items()):
                    if value is not None:
                        txn.put(compute_value_key(ns, key), value, db=self._values)
            elif have != encoded:
                raise StoreCorrupt(f"the database in {self.path} belongs to a different genesis")

    def get_genesis(self) -> Genesis | None:
        """The genesis this store was initialised with."""
        with self.env.begin() as txn:
            raw = txn.get(b"genesis", db=self._meta)
        return None if raw is None else Genesis.decode(raw)

    def get_tip(self) -> ChainTip:
        """The last committed block's summary."""
        with self.env.begin() as txn:
            raw = txn.get(b"tip", db=self._meta)
        if raw is None:
            raise StoreCorrupt("store has no tip: not initialised")
        h, bid, t, sr, rr = decode_raw(raw)
        return ChainTip(h, bid, t, sr, rr)

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
    ) -> None:
        """Persist a decided and executed block atomically and durably (one synced write transaction), with its
        entries of the governance index (``gov_positions``: indexes of its governance transactions)."""
        hk = _height_key(block.header.height)
        with self.env.begin(write=True) as txn:
            raw_tip = txn.get(b"tip", db=self._meta)
            if raw_tip is None:
                raise StoreCorrupt("store has no tip: not initialised")
            current = decode_raw(raw_tip)[0]
            if current + 1 != block.header.height:
                raise StoreCorrupt(f"committing block {block.header.height} on top of {current}")
            txn.put(hk, block.encode(), db=self._blocks)
            txn.put(hk, commit.encode(), db=self._commits)
            txn.put(hk, encode_trusted([r.to_wire() for r in receipts]), db=self._receipts)
            for i, th in enumerate(tx_hashes):
                txn.put(th, hk + struct.pack(">I", i), db=self._txindex)
            nodes_cur = txn.cursor(db=self._nodes)
            nodes_cur.putmulti(sorted(new_nodes.items()), overwrite=False)
            for (ns, key), value in sorted(state_writes.items()):
                vk = compute_value_key(ns, key)
                if value is None:
                    txn.delete(vk, db=self._values)
                else:
                    txn.put(vk, value, db=self._values)
            self._put_index_entries(txn, block.header.height, block.header.validators_hash, gov_positions)
            txn.put(b"tip", encode_trusted(tip.to_wire()), db=self._meta)

    def _put_index_entries(self, txn: Any, height: int, validators_hash: bytes, gov_positions: Iterable[int]) -> None:
        """The governance index entries of one block (inside the caller's write transaction)."""
        hk = _height_key(height)
        last = txn.get(b"last_validators_hash", db=self._meta)
        if height >= 2 and last is not None and bytes(last) != validators_hash:
            txn.put(b"v" + hk, b"", db=self._govindex)
        txn.put(b"last_validators_hash", validators_hash, db=self._meta)
        for i in gov_positions:
            txn.put(b"g" + hk + struct.pack(">I", i), b"", db=self._govindex)
        txn.put(b"gov_index_height", hk, db=self._meta)

    def get_index_height(self) -> int:
        """The height through which the governance index is complete (0: none; a database written before it
        existed is backfilled by :meth:`process_index_backfill`)."""
        with self.env.begin() as txn:
            raw = txn.get(b"gov_index_height", db=self._meta)
        return 0 if raw is None else _U64.unpack(raw)[0]

    def process_index_backfill(self, get_gov_positions: Any, batch: int = 1000) -> int:
        """Index the blocks the governance index lacks (a database from before it), ``batch`` blocks per write
        transaction; ``get_gov_positions(block)`` names a block's governance transactions. Blocks stored meanwhile
        are indexed at commit. Returns how many blocks were indexed."""
        done = 0
        while True:
            start = self.get_index_height() + 1
            tip = self.get_tip().height
            if start > tip:
                return done
            with self.env.begin(write=True) as txn:
                for h in range(start, min(tip, start + batch - 1) + 1):
                    raw = txn.get(_height_key(h), db=self._blocks)
                    if raw is None:
                        raise StoreCorrupt(f"block {h} is missing below the tip {tip}")
                    block = Block.decode(bytes(raw))
                    self._put_index_entries(txn, h, block.header.validators_hash, get_gov_positions(block))
                    done += 1

    # -- reads -------------------------------------------------------------------------------------------

    def get_block_bytes(self, height: int) -> bytes | None:
        """Encoded block at a height."""
        with self.env.begin() as txn:
            return txn.get(_height_key(height), db=self._blocks)

    def get_block(self, height: int) -> Block | None:
        """Block at a height, or None."""
        raw = self.get_block_bytes(height)
        return None if raw is None else Block.decode(raw)

    def get_commit(self, height: int) -> Commit | None:
        """Commit (precommit signatures) that decided the block at a height."""
        with self.env.begin() as txn:
            raw = txn.get(_height_key(height), db=self._commits)
        return None if raw is None else Commit.decode(raw)

    def get_receipts(self, height: int) -> list[Receipt] | None:
        """Receipts of the block at a height."""
        with self.env.begin() as txn:
            raw = txn.get(_height_key(height), db=self._receipts)
        if raw is None:
            return None
        return [Receipt.from_decoded(r) for r in decode_raw(raw)]

    def get_receipts_bytes(self, height: int) -> bytes | None:
        """Encoded receipts list of the block at a height."""
        with self.env.begin() as txn:
            return txn.get(_height_key(height), db=self._receipts)

    def get_tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, index) of a committed transaction."""
        with self.env.begin() as txn:
            raw = txn.get(tx_hash, db=self._txindex)
        if raw is None:
            return None
        return _U64.unpack(raw[:8])[0], struct.unpack(">I", raw[8:])[0]

    def is_tx_committed(self, tx_hash: bytes) -> bool:
        """True iff a transaction with this hash is on chain."""
        with self.env.begin() as txn:
            return txn.get(tx_hash, db=self._txindex) is not None

    def get_committed(self, tx_hashes: Iterable[bytes]) -> set[bytes]:
        """The hashes among ``tx_hashes`` that are on chain, looked up in one read transaction."""
        with self.env.begin() as txn:
            return {h for h in tx_hashes if txn.get(h, db=self._txindex) is not None}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        """Current (after the tip) value of a state key."""
        with self.env.begin() as txn:
            return txn.get(compute_value_key(namespace, key), db=self._values)

    def get_node(self, node_hash: bytes) -> bytes | None:
        """A state-tree node by hash (the NodeStore interface of qilian.state)."""
        with self.env.begin() as txn:
            return txn.get(node_hash, db=self._nodes)

    def iter_raw_blocks(self, start: int = 1) -> Iterator[tuple[int, bytes]]:
        """(height, encoded block) in height order from ``start``."""
        with self.env.begin() as txn:
            cur = txn.cursor(db=self._blocks)
            if not cur.set_range(_height_key(start)):
                return
            for k, v in cur:
                yield _U64.unpack(k)[0], bytes(v)

    def iter_state_values(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (flat key, value) of the current state, in key order."""
        with self.env.begin() as txn:
            for k, v in txn.cursor(db=self._values):
                yield bytes(k), bytes(v)

    def count_state_values(self) -> int:
        """Number of live state keys."""
        with self.env.begin() as txn:
            return int(txn.stat(self._values)["entries"])

    # -- snapshots ---------------------------------------------------------------------------------------

    def begin_snapshot(self) -> StoreSnapshot:
        """A consistent read view: every read through it sees the chain at one tip, whatever commits meanwhile
        (one LMDB read transaction). Use it as a context manager; it must be closed."""
        return StoreSnapshot(self)


class StoreSnapshot:
    """Reads of one LMDB read transaction, so a query that reads a block, its commit, the next block and state
    nodes never mixes two heights. Short-lived: an open snapshot pins the pages it sees."""

    def __init__(self, store: ChainStore):
        self._store = store
        self._txn = store.env.begin()

    def __enter__(self) -> StoreSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the read transaction."""
        self._txn.abort()

    def get_tip(self) -> ChainTip:
        """The tip as of the snapshot."""
        raw = self._txn.get(b"tip", db=self._store._meta)
        if raw is None:
            raise StoreCorrupt("store has no tip: not initialised")
        h, bid, t, sr, rr = decode_raw(raw)
        return ChainTip(h, bid, t, sr, rr)

    def get_block(self, height: int) -> Block | None:
        """Block at a height, or None."""
        raw = self._txn.get(_height_key(height), db=self._store._blocks)
        return None if raw is None else Block.decode(bytes(raw))

    def get_commit(self, height: int) -> Commit | None:
        """Commit of the block at a height, or None."""
        raw = self._txn.get(_height_key(height), db=self._store._commits)
        return None if raw is None else Commit.decode(bytes(raw))

    def get_receipts(self, height: int) -> list[Receipt] | None:
        """Receipts of the block at a height, or None."""
        raw = self._txn.get(_height_key(height), db=self._store._receipts)
        return None if raw is None else [Receipt.from_decoded(r) for r in decode_raw(bytes(raw))]

    def get_tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, index) of a committed transaction."""
        raw = self._txn.get(tx_hash, db=self._store._txindex)
        if raw is None:
            return None
        return _U64.unpack(raw[:8])[0], struct.unpack(">I", raw[8:])[0]

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        """Value of a state key after the snapshot's tip."""
        raw = self._txn.get(compute_value_key(namespace, key), db=self._store._values)
        return None if raw is None else bytes(raw)

    def get_state_page(self, namespace: str, prefix: bytes, after: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` (key, value) pairs of the state after the snapshot's tip whose key starts with
        ``prefix`` and sorts after ``after`` ("" for the first page), in key order. The flat table is sorted by
        namespace then key, so a listing (the holders of an asset) is one cursor walk, not a scan of the tree."""
        base = compute_value_key(namespace, b"")
        first = base + prefix
        start = base + after + b"\x00" if after else first
        out: list[tuple[bytes, bytes]] = []
        cur = self._txn.cursor(db=self._store._values)
        if limit <= 0 or not cur.set_range(start):
            return out
        for k, v in cur:
            if not bytes(k).startswith(first):
                break
            out.append((bytes(k)[len(base):], bytes(v)))
            if len(out) >= limit:
                break
        return out

    def iter_namespace(self, namespace: str, limit: int) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of a state namespace after the snapshot's tip, in key order, at most ``limit``."""
        yield from self.get_state_page(namespace, b"", b"", limit)

    def get_node(self, node_hash: bytes) -> bytes | None:
        """A state-tree node (the NodeStore interface), as of the snapshot."""
        raw = self._txn.get(node_hash, db=self._store._nodes)
        return None if raw is None else bytes(raw)

    def get_validator_change_heights(self, up_to: int) -> list[int]:
        """Heights 2..``up_to`` whose header names another validator set than the previous header (the
        governance index: O(changes), not a scan of the headers)."""
        out: list[int] = []
        cur = self._txn.cursor(db=self._store._govindex)
        if not cur.set_range(b"v"):
            return out
        for k, _ in cur:
            k = bytes(k)
            if not k.startswith(b"v"):
                break
            h = _U64.unpack(k[1:9])[0]
            if h > up_to:
                break
            out.append(h)
        return out

    def iter_gov_positions(self, start: int, index: int, stop: int) -> Iterator[tuple[int, int]]:
        """(height, index) of the governance transactions from (``start``, ``index``) through height ``stop``,
        in chain order (the governance index)."""
        cur = self._txn.cursor(db=self._store._govindex)
        if not cur.set_range(b"g" + _height_key(start) + struct.pack(">I", index)):
            return
        for k, _ in cur:
            k = bytes(k)
            if not k.startswith(b"g"):
                return
            h = _U64.unpack(k[1:9])[0]
            if h > stop:
                return
            yield h, struct.unpack(">I", k[9:13])[0]
