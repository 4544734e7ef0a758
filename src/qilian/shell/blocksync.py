"""The block-sync reactor: Status every second, GetBlocks to the most advanced peer when behind, answers to
peers' GetBlocks, and verified application of the blocks that come back.

A node that is behind (restarted, partitioned, empty data directory) learns so from its peers' Status messages and
fetches the missing blocks with their commits, verifies both against the validator set, executes them and rejoins.
Narrow interface: consensus asks :meth:`BlockSyncReactor.request_sync`; block sync tells consensus
:meth:`~qilian.shell.consensus.ConsensusReactor.on_synced` after it moved the tip."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from qilian.execution.block import BlockInvalid, check_block, check_commit
from qilian.execution.limits import check_block_limits
from qilian.p2p.messages import MAX_BLOCKS_PER_REPLY, MAX_FRAME_BYTES, Blocks, BlockWithCommit, GetBlocks, Status
from qilian.shell.apply import Applier, Release
from qilian.shell.ports import Clock, Ledger, Network, TimerHandle, TxPool
from qilian.shell.timing import ShellTiming
from qilian.types.codec import CodecError
from qilian.types.core import Block, Commit, compute_tx_hash

log = logging.getLogger("qilian.blocksync")

SYNC_BATCH = 32
"""Blocks asked for per sync request (a reply is also bounded by the frame size)."""


class ConsensusView(Protocol):
    """What block sync needs from consensus."""

    def get_base_height(self) -> int:
        """Highest height committed or executing."""

    def get_round(self) -> int:
        """Current round (for Status)."""

    def on_synced(self) -> None:
        """The tip moved by block sync."""


class BlockSyncReactor:
    """Catching up with the chain from peers."""

    def __init__(self, *, ledger: Ledger, pool: TxPool, network: Network, clock: Clock, timing: ShellTiming,
                 applier: Applier, consensus: ConsensusView, on_fatal: Callable[[str], None]):
        self.ledger = ledger
        self.pool = pool
        self.network = network
        self.clock = clock
        self.timing = timing
        self.applier = applier
        self.consensus = consensus
        self._on_fatal = on_fatal
        self.sync_pending_since: int | None = None
        self.blocks_synced = 0
        """Blocks applied from peers (exposed in /status and /metrics)."""
        self._timer: TimerHandle | None = None
        self._stopping = False
        self._asked: dict[bytes, int] = {}
        """Peer → first height of the last sync request sent to it."""
        self._lacking: dict[bytes, int] = {}
        """Peer → a first height it answered with no blocks: a node that joined by state sync holds no block
        below its snapshot's window, so it is passed over for that height while another peer is ahead."""

    def start(self) -> None:
        self._on_status_timer()

    def stop(self) -> None:
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()

    def _get_tip_height(self) -> int:
        return self.ledger.get_parent_info().height

    def _on_status_timer(self) -> None:
        if self._stopping:
            return
        self.network.broadcast(Status(self._get_tip_height(), max(self.consensus.get_round(), 0)))
        now = self.clock.get_monotonic_ms()
        if self.sync_pending_since is not None and now - self.sync_pending_since > self.timing.sync_timeout_ms:
            self.sync_pending_since = None
        base = self.consensus.get_base_height()
        if any(self.network.get_peer_height(p) > base for p in self.network.get_peers()):
            self.request_sync()
        self._timer = self.clock.call_later(self.timing.status_interval_ms, self._on_status_timer)

    def on_status(self, sender: bytes, msg: Status) -> None:
        self.network.set_peer_height(sender, msg.height)
        if msg.height > self.consensus.get_base_height():
            self.request_sync()

    def on_peer_up(self, address: bytes) -> None:
        """Tell a (re)connected peer where we are."""
        self.network.send(address, Status(self._get_tip_height(), max(self.consensus.get_round(), 0)))

    def on_peer_ready(self, address: bytes) -> None:
        """After consensus re-sent its messages to the peer: fetch from it if it is ahead."""
        if self.network.get_peer_height(address) > self._get_tip_height():
            self.request_sync()

    def request_sync(self, force: bool = False) -> None:
        """Ask the most advanced peer for the blocks after our tip (one request in flight)."""
        if self.sync_pending_since is not None and not force:
            return
        tip = self._get_tip_height()
        ahead = [(self.network.get_peer_height(p), p) for p in self.network.get_peers()]
        ahead = [a for a in ahead if a[0] > tip]
        if not ahead:
            return
        holding = [a for a in ahead if self._lacking.get(a[1]) != tip + 1]
        _, best = max(holding or ahead)
        if self.network.send(best, GetBlocks(tip + 1, SYNC_BATCH)):
            self._asked[best] = tip + 1
            self.sync_pending_since = self.clock.get_monotonic_ms()

    def on_get_blocks(self, sender: bytes, req: GetBlocks) -> None:
        tip = self._get_tip_height()
        items: list[BlockWithCommit] = []
        size = 0
        for h in range(req.start, min(req.start + min(req.count, MAX_BLOCKS_PER_REPLY), tip + 1)):
            raw = self.ledger.get_block_bytes(h)
            commit = self.ledger.get_commit(h)
            if raw is None or commit is None:
                break
            craw = commit.encode()
            size += len(raw) + len(craw) + 16
            if items and size > MAX_FRAME_BYTES - 64 * 1024:
                break
            items.append(BlockWithCommit(raw, craw))
        self.network.send(sender, Blocks(tuple(items)))

    # ------------------------------------------------------------------------------------------ applying

    def on_blocks(self, sender: bytes, msg: Blocks, finished: Callable[[], None] | None = None) -> None:
        """Verify and apply synced blocks in order, one at a time, holding the ledger's writer; a bad one is the
        sender's fault (reported, and the rest of the batch dropped)."""
        self.sync_pending_since = None
        items = list(msg.items)
        if not items and sender in self._asked:
            self._lacking[sender] = self._asked[sender]
        state = {"applied": 0}

        def job(release: Release) -> None:
            def end() -> None:
                try:
                    applied = state["applied"]
                    if applied:
                        self.blocks_synced += applied
                        log.info("synced %d blocks; now at height %d", applied, self._get_tip_height())
                        self.consensus.on_synced()
                        self.request_sync()
                finally:
                    release()
                    if finished is not None:
                        finished()

            self._apply_from(sender, items, 0, state, end)

        self.applier.run_exclusive(job)

    def _apply_from(self, sender: bytes, items: list[BlockWithCommit], i: int, state: dict[str, int],
                    end: Callable[[], None]) -> None:
        while i < len(items):
            item = items[i]
            tip = self.ledger.get_parent_info()
            try:
                block = Block.decode(item.block)
                commit = Commit.decode(item.commit)
            except CodecError as exc:
                self.network.report_violation(sender, f"synced block does not decode: {exc}")
                end()
                return
            if block.header.height <= tip.height:
                i += 1
                continue
            if block.header.height != tip.height + 1:
                break
            suite = self.ledger.rules.suite
            hashes = [compute_tx_hash(suite, tx.body) for tx in block.txs]
            try:
                block_id = suite.hash(block.header.encode())
                validators = self.ledger.get_validators(block.header.height)  # tip + 1: known
                if validators is None:
                    raise BlockInvalid(f"the validator set of height {block.header.height} is not known yet")
                check_commit(suite, self.ledger.rules.chain_id, validators, commit, block_id, block.header.height)
            except BlockInvalid as exc:
                self.network.report_violation(sender, f"synced block {block.header.height} has no valid commit: "
                                                      f"{exc}")
                end()
                return
            if block.header.prev_block_id != tip.block_id:
                # Signed by > 2/3 of the power yet not on our chain: we hold a block the network never decided.
                self._on_fatal(f"block {block.header.height} signed by the validators does not extend this node's "
                               f"block {tip.height}")
                end()
                return
            nxt = i + 1

            def verified(verdicts: Mapping[bytes, bool], block: Block = block, commit: Commit = commit,
                         hashes: list[bytes] = hashes, raw_len: int = len(item.block), nxt: int = nxt) -> None:
                self._on_verified(sender, items, nxt, state, end, block, commit, hashes, raw_len)

            # Signatures off the shell's thread in the node (an SM2 block of 5,000 takes seconds).
            self.pool.verify_many(list(zip(block.txs, hashes, strict=True)), verified)
            return
        end()

    def _on_verified(self, sender: bytes, items: list[BlockWithCommit], nxt: int, state: dict[str, int],
                     end: Callable[[], None], block: Block, commit: Commit, hashes: list[bytes], raw_len: int) -> None:
        tip = self.ledger.get_parent_info()
        if block.header.height != tip.height + 1:
            self._apply_from(sender, items, nxt, state, end)
            return
        try:
            check_block_limits(tip.get_params(self.ledger.rules.genesis.params), block.header.height,
                               len(block.txs), raw_len)
            check_block(self.ledger.rules, tip, block, hashes, self.ledger.get_committed(hashes).__contains__,
                        self.pool.get_sig_checked(block.txs, hashes))
        except BlockInvalid as exc:
            if block.header.state_root != tip.state_root or block.header.receipts_root != tip.receipts_root:
                self._on_fatal(f"synced block {block.header.height}: {exc}")
            else:
                self.network.report_violation(sender, f"synced block {block.header.height} is invalid: {exc}")
            end()
            return

        def stored(ok: bool, error: BaseException | None) -> None:
            if error is not None:
                self._on_fatal(f"committing synced block {block.header.height} failed: {error}")
                end()
                return
            if ok:
                state["applied"] += 1
            self._apply_from(sender, items, nxt, state, end)

        self.applier.apply_locked(block, commit, hashes, stored)
