"""The node: wiring of store, mempool, execution and (for now) a single validator's block production.

All the rules live in the pure packages; this module only moves bytes between them, the clock, the disk and the
API. Block production uses the same header and commit format the BFT network will: a commit is a set of
precommit signatures over the block ID — here the one validator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from qilian.crypto import get_suite
from qilian.execution.block import (
    ParentInfo,
    check_block,
    compute_empty_root,
    execute_block,
    make_header,
)
from qilian.execution.rules import ChainRules, TxRejected, check_tx_static, check_tx_window, is_valid_tx_signature
from qilian.mempool.pool import Mempool, PoolEntry
from qilian.node.config import NodeConfig, load_genesis
from qilian.sdk.keys import get_password_from_env, load_key
from qilian.state import StateTree
from qilian.storage.store import ChainStore, ChainTip
from qilian.types.core import (
    PRECOMMIT,
    Block,
    Commit,
    CommitSig,
    Receipt,
    Transaction,
    compute_block_id,
    compute_tx_hash,
    compute_vote_sign_bytes,
)

log = logging.getLogger("qilian.node")

SIG_CACHE_SIZE = 200_000
"""Verified-signature cache entries (tx hash → verified), so a transaction is verified once."""
MAX_EVENT_QUEUE = 1000
"""Events buffered per /events subscriber; a subscriber that falls further behind is disconnected."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """Answer to a transaction submission."""

    tx_hash: bytes
    """The transaction's hash."""
    status: str
    """``accepted`` (in the mempool), ``known`` (already waiting) or ``committed``."""


class Node:
    """One Qilian node over its home directory."""

    def __init__(self, config: NodeConfig):
        self.config = config
        self.genesis = load_genesis(config.genesis_path)
        self.suite = get_suite(self.genesis.suite)
        self.rules = ChainRules.from_genesis(self.genesis, self.suite)
        self.genesis_hash = self.genesis.compute_hash(self.suite)
        self.key = load_key(config.key_path, get_password_from_env())
        if self.key.suite.name != self.suite.name:
            raise ValueError(f"node key is a {self.key.suite.name} key but the chain uses {self.suite.name}")
        self.validator = self.genesis.validators.get_by_address(self.key.address)
        self.store = ChainStore(config.data_path)
        self.store.process_init(
            self.genesis,
            ChainTip(0, b"", self.genesis.genesis_time_ms, b"\x00" * 32, compute_empty_root(self.suite)),
        )
        self.tree = StateTree(self.suite.hash, self.store)
        self.mempool = Mempool(config.mempool_max_txs, config.mempool_max_bytes)
        self._sig_ok: OrderedDict[bytes, bool] = OrderedDict()
        self._commit_waiters: dict[bytes, list[asyncio.Future[tuple[int, int]]]] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self.blocks_produced = 0
        tip = self.store.get_tip()
        last = self.store.get_block(tip.height) if tip.height else None
        # True while the last block's receipts and state are not yet committed by a later header.
        self._results_pending = last is not None and last.header.tx_count > 0

    # -- status ------------------------------------------------------------------------------------------

    def get_tip(self) -> ChainTip:
        return self.store.get_tip()

    def get_parent_info(self, tip: ChainTip) -> ParentInfo:
        """The facts the next block builds on."""
        return ParentInfo(tip.height, tip.block_id, tip.time_ms, tip.state_root, tip.receipts_root,
                          self.genesis.validators)

    # -- admission ---------------------------------------------------------------------------------------

    def process_submit(self, raw: bytes) -> Submitted:
        """Admit a transaction: decode, check the rules, verify the signature once, add to the mempool.

        Raises CodecError (malformed), TxRejected (breaks a rule) or MempoolFull. Nothing changes on error."""
        if len(raw) > self.genesis.params.max_tx_bytes:
            raise TxRejected("too_large", f"transaction is {len(raw)} bytes, over the limit of "
                                          f"{self.genesis.params.max_tx_bytes}")
        tx = Transaction.decode(raw, max_bytes=self.genesis.params.max_tx_bytes)
        tx_hash = compute_tx_hash(self.suite, tx.body)
        if self.mempool.is_known(tx_hash):
            return Submitted(tx_hash, "known")
        if self.store.is_tx_committed(tx_hash):
            return Submitted(tx_hash, "committed")
        check_tx_static(self.rules, tx, len(raw))
        check_tx_window(self.rules, tx, self.get_tip().height + 1)
        if not self._sig_ok.get(tx_hash):
            if not is_valid_tx_signature(self.suite, tx, tx_hash):
                raise TxRejected("bad_signature", "signature does not verify for the sender key and this body")
            self._remember_sig(tx_hash)
        self.mempool.process_add(PoolEntry(tx, tx_hash, len(raw)))
        self._wake.set()
        return Submitted(tx_hash, "accepted")

    def _remember_sig(self, tx_hash: bytes) -> None:
        self._sig_ok[tx_hash] = True
        if len(self._sig_ok) > SIG_CACHE_SIZE:
            self._sig_ok.popitem(last=False)

    async def wait_for_commit(self, tx_hash: bytes, timeout_s: float) -> tuple[int, int] | None:
        """(height, index) once the transaction is committed, or None on timeout."""
        loc = self.store.get_tx_location(tx_hash)
        if loc is not None:
            return loc
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._commit_waiters.setdefault(tx_hash, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._commit_waiters.get(tx_hash)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(fut)
                if not waiters:
                    self._commit_waiters.pop(tx_hash, None)

    # -- events ------------------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of block and event notifications; raises RuntimeError when too many subscribers."""
        if len(self._subscribers) >= self.config.max_ws_clients:
            raise RuntimeError(f"too many event subscribers (limit {self.config.max_ws_clients})")
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_EVENT_QUEUE)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(q)

    def _publish(self, msg: dict[str, Any]) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:
                # A slow consumer must not hold the node's memory: drop it; it reconnects and catches up.
                self._subscribers.discard(q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait({"type": "overflow"})

    # -- block production (single validator) -------------------------------------------------------------

    def is_block_due(self, tip: ChainTip) -> bool:
        """Produce a block when there is work, when the last block's results still need a header to commit them
        (so every receipt becomes provable promptly), or on every interval when empty blocks are configured."""
        return bool(len(self.mempool) or self.genesis.params.create_empty_blocks or self._results_pending)

    def process_produce_block(self, now_ms: int) -> Block | None:
        """Build, sign, execute and durably commit the next block. Returns it, or None if nothing was due."""
        if self.validator is None:
            raise RuntimeError("this node's key is not a validator; it cannot produce blocks")
        tip = self.get_tip()
        if not self.is_block_due(tip):
            return None
        parent = self.get_parent_info(tip)
        height = tip.height + 1
        dead: list[bytes] = []

        def includable(e: PoolEntry) -> bool:
            try:
                check_tx_window(self.rules, e.tx, height)
            except TxRejected:
                dead.append(e.tx_hash)
                return False
            if self.store.is_tx_committed(e.tx_hash):
                dead.append(e.tx_hash)
                return False
            return True

        params = self.genesis.params
        entries = self.mempool.get_batch(params.max_block_txs, params.max_block_bytes - 4096, includable)
        self.mempool.process_remove(dead)
        txs = tuple(e.tx for e in entries)
        hashes = [e.tx_hash for e in entries]
        last_commit = self.store.get_commit(tip.height) if tip.height else None
        header = make_header(self.rules, parent, now_ms, hashes, last_commit, self.validator.address)
        block = Block(header, txs, last_commit)
        check_block(self.rules, parent, block, hashes, self.store.is_tx_committed, self._sig_ok)
        block_id = compute_block_id(self.suite, header)
        sig = self.suite.sign(self.key.private_key, compute_vote_sign_bytes(self.rules.chain_id, PRECOMMIT,
                                                                            height, 0, block_id))
        commit = Commit(height, 0, block_id, (CommitSig(self.validator.address, sig),))
        self.process_apply_block(block, commit, hashes)
        return block

    def process_apply_block(self, block: Block, commit: Commit, hashes: list[bytes]) -> list[Receipt]:
        """Execute a decided block and commit it with its results in one synced write; then notify."""
        tip = self.get_tip()
        result = execute_block(self.rules, self.store, block.txs, hashes)
        new_root, nodes = self.tree.apply_writes(tip.state_root, result.writes)
        new_tip = ChainTip(block.header.height, commit.block_id, block.header.time_ms, new_root,
                           result.receipts_root)
        self.store.process_commit_block(block, commit, hashes, result.receipts, result.writes, nodes, new_tip)
        self.mempool.process_remove(hashes)
        self._results_pending = bool(hashes)
        self.blocks_produced += 1
        self._on_committed(block, commit, hashes, result.receipts)
        return list(result.receipts)

    def _on_committed(self, block: Block, commit: Commit, hashes: list[bytes], receipts: tuple[Receipt, ...]
                      | list[Receipt]) -> None:
        h = block.header.height
        for i, th in enumerate(hashes):
            for fut in self._commit_waiters.pop(th, []):
                if not fut.done():
                    fut.set_result((h, i))
        if not self._subscribers:
            return
        from qilian.api.views import event_view

        self._publish({"type": "block", "height": h, "block_id": commit.block_id.hex(),
                       "tx_count": len(hashes), "time_ms": block.header.time_ms})
        for th, r in zip(hashes, receipts, strict=True):
            for ev in r.events:
                self._publish({"type": "event", "height": h, "tx_hash": th.hex(), **event_view(ev)})

    async def run_block_loop(self) -> None:
        """Produce blocks on the configured interval until stopped."""
        interval = self.genesis.params.block_interval_ms / 1000
        next_at = time.monotonic()
        while not self._stopping:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)
            try:
                self.process_produce_block(int(time.time() * 1000))
            except Exception:
                # Our own block failing our own checks is a bug, not an input; stop loudly rather than fork.
                log.exception("block production failed; stopping the node")
                raise

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self.store.close()
