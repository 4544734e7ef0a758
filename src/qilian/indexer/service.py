"""The indexer: turns committed blocks from the block store into index rows.

It reads the block store — never the node's other memory — so it can run embedded in the node (woken by a commit
hook), or offline over a stopped node's data (``qilian indexer``), and both give the same index. The one shortcut:
the embedded runner is handed each block the node has just stored (the very objects written, with their body
hashes), so following the tip it does not read back and decode what it was given; any height it was not handed
(catch-up, gap repair, a restart) comes from the store, and both give the same rows. Catching up walks
from the last indexed height to the store's tip; the gap detector re-indexes any height missing below it (a
row deleted or lost) from the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from qilian.api.views import STATUS_NAMES
from qilian.contracts.system import SYSTEM_CONTRACTS
from qilian.crypto.suite import Suite
from qilian.execution.contracts import CONTRACTS_MODULE
from qilian.indexer.sql import ContractVersion, EventRow, HeightRows, SqlIndex, TxRow
from qilian.indexer.sqlite import SqliteIndex
from qilian.node.snapshots import get_state_sync_record
from qilian.storage.store import ChainStore
from qilian.types.codec import to_json_value
from qilian.types.core import Block, Commit, Receipt, compute_block_id, compute_tx_hash

log = logging.getLogger("qilian.indexer")

INDEX_FILE: Final = "index.sqlite"
"""File name of the index, in ``<home>/index/``."""
MAX_BLOCKS_PER_PASS: Final = 500
"""Most heights one catch-up pass indexes before yielding (so a long catch-up never holds a thread for long)."""
MAX_HEIGHTS_PER_WRITE: Final = 50
"""Most heights written in one index transaction when the indexer is behind (catching up); following the tip it
writes each height as it comes. One commit per batch instead of per height: the pages a height dirties (index
upper levels, the blocks table, the meta row) are written once per batch (docs/benchmarks.md)."""
MAX_TXS_PER_WRITE: Final = 10_000
"""A batch also ends once it holds this many transactions (bounds the memory and the length of a write)."""
MAX_HANDED_TXS: Final = 20_000
"""Most transactions of blocks handed over by the node (:meth:`Indexer.on_stored`) held for the next pass — four
full blocks; an indexer further behind reads the rest from the store."""
MAX_GAPS_PER_PASS: Final = 100
"""Most missing heights the gap detector repairs in one pass."""
BACKENDS: Final = ("sqlite", "postgres")
"""Index backends: SQLite beside the node (default), PostgreSQL for an explorer serving many users."""
IDLE_WAKE_S: Final = 2.0
"""The embedded indexer also wakes this often without a commit (to repair gaps, to retry after an error)."""


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one catch-up pass did."""

    indexed: int
    """Heights indexed in order."""
    repaired: int
    """Missing heights re-indexed by the gap detector."""
    last_height: int
    """Last indexed height afterwards."""
    tip: int
    """Store tip seen by the pass."""


def get_index_path(home: Path) -> Path:
    """Where a node home's index lives."""
    return home / "index" / INDEX_FILE


def open_index(home: Path, backend: str = "sqlite", url: str = "") -> SqlIndex:
    """The index a node home is configured with: SQLite at ``url`` (a file; empty: ``<home>/index/``) or
    PostgreSQL at the libpq URL ``url``. psycopg is imported only for PostgreSQL (an optional extra)."""
    if backend == "sqlite":
        return SqliteIndex(Path(url) if url else get_index_path(home))
    if backend == "postgres":
        if not url:
            raise ValueError("the postgres index backend needs a URL (postgresql://user@host:port/db)")
        from qilian.indexer.postgres import PostgresIndex

        return PostgresIndex(url)
    raise ValueError(f"unknown index backend {backend!r}: one of {', '.join(BACKENDS)}")


def compute_height_rows(suite: Suite, block: Block, commit: Commit | None, receipts: Sequence[Receipt],
                        tx_hashes: Sequence[bytes] | None = None) -> HeightRows:
    """The index rows of one committed block (pure: the same block always gives the same rows). ``tx_hashes``, the
    block's body hashes when the caller has them, saves re-encoding and hashing every body."""
    h = block.header
    txs: list[TxRow] = []
    events: list[EventRow] = []
    contracts: list[ContractVersion] = []
    senders: dict[bytes, str] = {}
    for i, tx in enumerate(block.txs):
        th = (compute_tx_hash(suite, tx.body) if tx_hashes is None else tx_hashes[i]).hex()
        r = receipts[i] if i < len(receipts) else None
        b = tx.body
        sender = senders.get(b.sender)
        if sender is None:
            sender = senders[b.sender] = suite.compute_address(b.sender).hex()
        status = "unknown" if r is None else STATUS_NAMES.get(r.status, str(r.status))
        target = b.to
        if b.to == CONTRACTS_MODULE and r is not None and r.status == 0 and isinstance(r.result, str):
            target = r.result  # the deployed or upgraded contract's address
            args = list(b.args)
            name = args[0] if b.method == "deploy" and args and isinstance(args[0], str) else ""
            source = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            contracts.append(ContractVersion(r.result, 1 if b.method == "deploy" else 0, name, sender, h.height, i,
                                             th, source))
        txs.append(TxRow(th, h.height, i, sender, target, b.method, status, "" if r is None else r.error,
                         0 if r is None else r.fuel_used, h.time_ms))
        if r is not None:
            for k, ev in enumerate(r.events):
                events.append(EventRow(h.height, i, k, th, ev.source, ev.name, to_json_value(ev.data)))
    block_row = (compute_block_id(suite, h).hex(), h.time_ms, h.proposer.hex(), h.tx_count,
                 -1 if commit is None else commit.round, 0 if commit is None else len(commit.signatures))
    return HeightRows(h.height, block_row, tuple(txs), tuple(events), tuple(contracts))


def compute_genesis_rows() -> HeightRows:
    """Height 0: the system contracts every chain has from genesis."""
    return HeightRows(0, (), (), (), tuple(
        ContractVersion(name, 1, name, "", 0, i, "", source)
        for i, (name, source) in enumerate(sorted(SYSTEM_CONTRACTS.items()))))


class Indexer:
    """Feeds an index from a block store. Not thread-safe: one pass at a time (the embedded runner ensures it)."""

    def __init__(self, store: ChainStore, suite: Suite, index: SqlIndex):
        self.store, self.suite, self.index = store, suite, index
        record = get_state_sync_record(store)
        self.first_height = 1 if record is None else record.window_start
        """The first height the store holds (a node that joined by state sync has no block below its window)."""
        self._handed: dict[int, tuple[Block, Commit, Sequence[bytes], Sequence[Receipt]]] = {}
        """Blocks the node handed over (:meth:`on_stored`) and no pass has taken yet, by height."""
        self._handed_txs = 0
        self._handed_lock = threading.Lock()
        self.stopping = threading.Event()
        """Set by the embedded runner's stop: a running pass ends after the write in progress."""
        if index.get_last_height() == 0 and not index.get_contract_versions(next(iter(sorted(SYSTEM_CONTRACTS)))):
            index.process_height(compute_genesis_rows(), advance=False)

    def on_stored(self, block: Block, commit: Commit, tx_hashes: Sequence[bytes], receipts: Sequence[Receipt]) -> None:
        """Take a block the node has just stored (its commit hook): the next pass indexes it from these objects
        instead of reading it back. At most MAX_HANDED_TXS transactions are held; beyond that the oldest are
        dropped and read from the store when their turn comes. Called on the event loop while a pass may run on
        a thread, hence the lock."""
        with self._handed_lock:
            self._handed[block.header.height] = (block, commit, tx_hashes, receipts)
            self._handed_txs += len(block.txs)
            while self._handed_txs > MAX_HANDED_TXS and len(self._handed) > 1:
                self._drop_handed(min(self._handed))

    def _take_handed(self, height: int) -> tuple[Block, Commit, Sequence[bytes], Sequence[Receipt]] | None:
        """The block handed over for ``height``, if any; forgets it and every lower one (indexed already, or to be
        repaired from the store)."""
        with self._handed_lock:
            for old in [k for k in self._handed if k < height]:
                self._drop_handed(old)
            return self._drop_handed(height)

    def _drop_handed(self, height: int) -> tuple[Block, Commit, Sequence[bytes], Sequence[Receipt]] | None:
        got = self._handed.pop(height, None)
        if got is not None:
            self._handed_txs -= len(got[0].txs)
        return got

    def get_height_rows(self, height: int) -> HeightRows | None:
        """The rows of one height — from the block the node handed over, else from the store; None when the
        store does not hold it (yet)."""
        handed = self._take_handed(height)
        if handed is not None:
            return compute_height_rows(self.suite, handed[0], handed[1], handed[3], handed[2])
        with self.store.begin_snapshot() as snap:
            block, commit, receipts = snap.get_block(height), snap.get_commit(height), snap.get_receipts(height)
        if block is None:
            return None
        return compute_height_rows(self.suite, block, commit, receipts or [])

    def process_height(self, height: int, advance: bool) -> bool:
        """Index one height from the store; False when the store does not hold it (yet)."""
        rows = self.get_height_rows(height)
        if rows is None:
            return False
        self.index.process_height(rows, advance)
        return True

    def process_pass(self, max_blocks: int = MAX_BLOCKS_PER_PASS) -> PassResult:
        """Index up to ``max_blocks`` heights after the last indexed one — consecutive heights batched into one
        write (MAX_HEIGHTS_PER_WRITE, MAX_TXS_PER_WRITE) — then repair gaps below it."""
        tip = self.store.get_tip().height
        last = max(self.index.get_last_height(), self.first_height - 1)
        done = 0
        while last < tip and done < max_blocks and not self.stopping.is_set():
            batch: list[HeightRows] = []
            txs = 0
            while (last + len(batch) < tip and done + len(batch) < max_blocks and len(batch) < MAX_HEIGHTS_PER_WRITE
                   and txs < MAX_TXS_PER_WRITE):
                rows = self.get_height_rows(last + len(batch) + 1)
                if rows is None:
                    break
                batch.append(rows)
                txs += len(rows.txs)
            if not batch:
                break
            self.index.process_heights(batch, advance=True)
            last += len(batch)
            done += len(batch)
        repaired = 0
        for h in self.index.get_missing_heights(last, MAX_GAPS_PER_PASS, self.first_height):
            if self.stopping.is_set():
                break
            if self.process_height(h, advance=False):
                repaired += 1
        if repaired:
            log.warning("indexer: re-indexed %d missing heights", repaired)
        return PassResult(done, repaired, last, tip)

    def process_all(self) -> PassResult:
        """Catch up completely (used offline and by tests)."""
        total, repaired = 0, 0
        while True:
            r = self.process_pass()
            total += r.indexed
            repaired += r.repaired
            if r.indexed == 0 or r.last_height >= r.tip:
                return PassResult(total, repaired, r.last_height, r.tip)


class EmbeddedIndexer:
    """Runs an :class:`Indexer` inside the node: each commit wakes it; it indexes on a worker thread, so the
    event loop (consensus, API) never waits for SQLite."""

    def __init__(self, indexer: Indexer):
        self.indexer = indexer
        self.last_height = indexer.index.get_last_height()
        """Last indexed height after the latest pass (read by /metrics without querying the index on the loop)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pass: asyncio.Future[PassResult] | None = None
        """The pass running on a worker thread, if any (cancelling the runner does not stop that thread)."""
        self.errors = 0
        """Passes that failed (logged, retried at the next wake)."""
        self.on_pass: Callable[[PassResult], None] | None = None
        """Called after each pass (metrics)."""

    def on_commit(self, block: Block, commit: Commit, tx_hashes: Sequence[bytes], receipts: Sequence[Receipt]) -> None:
        """The node's commit hook: hand the stored block over and wake the runner (cheap; the work happens on a
        thread)."""
        self.indexer.on_stored(block, commit, tx_hashes, receipts)
        self._wake.set()

    def start(self) -> None:
        """Start the runner task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="indexer")

    async def stop(self) -> None:
        """Stop the runner and return only once no pass runs: a running pass ends after the write in progress.

        Why wait: the caller closes the index next, and cancelling the runner task does not stop the thread its
        pass runs on. Closing a SQLite connection while that thread writes through it crashed a node on shutdown
        (SIGSEGV in libsqlite3: a block-syncing node, whose indexer is always mid-pass, stopped by SIGTERM)."""
        self.indexer.stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        running = self._pass
        if running is not None:
            with contextlib.suppress(Exception):
                await running

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_WAKE_S)
            self._wake.clear()
            self._pass = loop.run_in_executor(None, self.indexer.process_pass)
            try:
                # Shielded: cancelling the runner (stop) leaves this future to complete with its thread.
                r = await asyncio.shield(self._pass)
            except Exception:
                self.errors += 1
                log.exception("indexer pass failed; retrying")
                continue
            self.last_height = r.last_height
            if self.on_pass is not None:
                self.on_pass(r)
            if r.last_height < r.tip:
                self._wake.set()  # more to do: keep going without waiting for the next commit
