"""The node's consensus: the shell (:mod:`qilian.shell` — consensus, mempool and block-sync reactors) over the
node's real IO. This module is wiring only: asyncio timers, the TLS transport, the WAL file, the signer-state
file, and the node's chain-store ledger and transaction admission, each behind the port the shell declares
(:mod:`qilian.shell.ports`). The simulator builds the same :class:`~qilian.shell.shell.Shell` over in-memory ports,
so the code that signs, logs, relays and commits here is the code the simulator crashes at every durable write.

Work that takes time runs off the event loop and answers through the port's callback: a decided block executes
and is stored on one worker thread; transaction signatures are verified on the node's verifier threads."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qilian.consensus.core import Core
from qilian.consensus.signer import SignerState
from qilian.consensus.timeouts import TimeoutConfig
from qilian.consensus.validators import ValidatorSet as ConsensusValidators
from qilian.execution.block import ParentInfo
from qilian.execution.evidence import EVIDENCE_NAMESPACE
from qilian.execution.members import get_member
from qilian.execution.rules import MemberInfo
from qilian.execution.valsets import ValidatorSetBook
from qilian.mempool.pool import Mempool
from qilian.node.signer_store import load_signer_state, save_signer_state
from qilian.node.snapshots import SnapshotServer
from qilian.node.threads import set_os_thread_name
from qilian.node.wal import Wal
from qilian.p2p.messages import Chunk, GetChunk, GetSnapshot, SnapshotManifest
from qilian.p2p.transport import Peer, Transport
from qilian.shell.consensus import StateDiverged
from qilian.shell.ports import SignerStore, TimerHandle, WalFile
from qilian.shell.shell import Shell
from qilian.shell.timing import ShellTiming
from qilian.state import StateTree
from qilian.storage.store import ChainTip, StoreSnapshot
from qilian.types.core import Block, Commit, Receipt, Transaction, ValidatorSet
from qilian.types.struct import Wire

if TYPE_CHECKING:
    from qilian.node.node import Node

log = logging.getLogger("qilian.consensus")

MAX_VIEW_MEMBERS = 100_000
"""Membership entries cached per view (the cache is dropped when the view moves, and when full)."""

__all__ = ["ConsensusDriver", "StateDiverged"]


class AsyncioClock:
    """Clock port: the running event loop's timers, the monotonic clock and wall time."""

    def get_monotonic_ms(self) -> int:
        return int(time.monotonic() * 1000)

    def get_wall_ms(self) -> int:
        return int(time.time() * 1000)

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay_ms / 1000, callback)


class TransportNetwork:
    """Network port over the mutual-TLS transport."""

    def __init__(self, transport: Transport):
        self.transport = transport

    def send(self, address: bytes, msg: Wire) -> bool:
        return self.transport.send(address, msg)

    def broadcast(self, msg: Wire, exclude: frozenset[bytes] | set[bytes] = frozenset()) -> None:
        self.transport.broadcast(msg, exclude)

    def get_peers(self) -> list[bytes]:
        return list(self.transport.peers)

    def get_peer_height(self, address: bytes) -> int:
        p = self.transport.peers.get(address)
        return p.height if p is not None else 0

    def set_peer_height(self, address: bytes, height: int) -> None:
        p = self.transport.peers.get(address)
        if p is not None:
            p.height = height

    def report_violation(self, address: bytes | None, reason: str) -> None:
        p = self.transport.peers.get(address) if address is not None else None
        self.transport.violations += 1
        log.warning("disconnecting peer %s: %s", p.spec.name if p is not None else "?", reason)
        if p is not None:
            p.close()


class FileSignerStore:
    """Signer-store port: ``home/signer/state``, replaced atomically and synced."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> SignerState:
        return load_signer_state(self.path)

    def save(self, state: SignerState) -> None:
        save_signer_state(self.path, state)


class _ViewNodes:
    """The state-tree node store of the ledger's current view (a :class:`~qilian.state.tree.NodeStore`)."""

    def __init__(self, ledger: NodeLedger):
        self._ledger = ledger

    def get_node(self, node_hash: bytes) -> bytes | None:
        return self._ledger.view.get_node(node_hash)


class NodeLedger:
    """Ledger port over the node's chain store; execution runs on one worker thread, one block at a time.

    One view of the chain: every read the shell makes through this port — the tip, stored blocks and commits, the
    committed transactions of the replay check, membership, the validator sets — goes through ONE store snapshot,
    :attr:`view`, which is replaced only here on the event loop, when a stored block's completion is delivered and
    just before the shell is told. The execution thread writes the store while the event loop runs; reading the
    live store, the shell could see a block its reactors had not been told of (block sync's next block, say) and
    judge a proposal, or a decision, against a parent that is not its own. With the view, what the shell reads
    moves exactly when the shell is told — as in the simulator's ledger, so both run the shell under one contract
    (docs/spec/consensus.md, "One view of the chain")."""

    def __init__(self, node: Node, exec_pool: ThreadPoolExecutor):
        self.node = node
        self.rules = node.rules
        self._exec_pool = exec_pool
        self._closed = False
        self.view: StoreSnapshot = node.store.begin_snapshot()
        """The snapshot every read of the shell goes through (see the class docstring); event loop only (a
        RocksDB snapshot is one iterator, not to be shared between threads)."""
        self._tip: ChainTip = self.view.get_tip()
        self._members: dict[bytes, MemberInfo | None] = {}
        """Membership read in the current view (dropped with it)."""
        self._valsets = ValidatorSetBook(node.suite, node.rules, self._get_view_tip, self._get_view_header_root,
                                         StateTree(node.suite.hash, _ViewNodes(self)).get_value,
                                         node.sync_record.get_set if node.sync_record is not None else None)

    def _advance_view(self) -> None:
        """A block is stored: the shell's reads move to it (on the event loop, before the shell hears of it)."""
        if self._closed:
            return
        old = self.view
        self.view = self.node.store.begin_snapshot()
        self._tip = self.view.get_tip()
        self._members = {}
        old.close()

    def close(self) -> None:
        """Release the view's snapshot (before the store is closed). A completion delivered after this — the
        node stops while a block finishes — moves nothing: the store may be closed already."""
        self._closed = True
        self.view.close()

    def _get_view_tip(self) -> tuple[int, bytes]:
        return self._tip.height, self._tip.state_root

    def _get_view_header_root(self, height: int) -> bytes | None:
        # The header alone: decoding a full block's transactions here cost a validator 3 % of its time, on the
        # event loop, once per height (a soak's profile, docs/benchmarks.md).
        header = self.view.get_block_header(height)
        return None if header is None else header.state_root

    def get_parent_info(self) -> ParentInfo:
        """The view's tip as the next block's parent: the sets of tip, tip + 1 and tip + 2 and the membership,
        all from the view (docs/governance.md: a change decided in block h signs from h + 2). Its membership
        lookup stays bound to this view: used after the view moved, it raises rather than answer for another
        height."""
        tip = self._tip
        current, nxt = self._valsets.get_sets_at_root(tip.state_root)
        last = self._valsets.get(tip.height) if tip.height else current
        assert last is not None, f"validator set of the stored height {tip.height} is unknown"
        rules, view, members = self.rules, self.view, self._members

        def get_member_in_view(public_key: bytes) -> MemberInfo | None:
            if public_key not in members:
                if len(members) >= MAX_VIEW_MEMBERS:
                    members.clear()
                members[public_key] = get_member(rules, view.get_state, public_key)
            return members[public_key]

        def is_evidence_committed_in_view(evidence_hash: bytes) -> bool:
            return view.get_state(EVIDENCE_NAMESPACE, evidence_hash) is not None

        # The governed chain params are read by the tip's state root (immutable), as Node.get_parent_info does.
        return ParentInfo(tip.height, tip.block_id, tip.time_ms, tip.state_root, tip.receipts_root,
                          current, nxt, last, get_member_in_view, self.node.get_chain_params(tip),
                          self._valsets.get, is_evidence_committed_in_view)

    def get_block_bytes(self, height: int) -> bytes | None:
        return self.view.get_block_bytes(height)

    def get_commit(self, height: int) -> Commit | None:
        return self.view.get_commit(height)

    def get_committed(self, tx_hashes: Iterable[bytes]) -> set[bytes]:
        return self.view.get_committed(tx_hashes)

    def get_validators(self, height: int) -> ValidatorSet | None:
        return self._valsets.get(height)

    def get_consensus_validators(self, height: int) -> ConsensusValidators | None:
        return self._valsets.get_consensus(height)

    def get_public_key(self, height: int, address: bytes) -> bytes | None:
        return self._valsets.get_public_key(height, address)

    def execute_and_store(self, block: Block, commit: Commit, hashes: list[bytes],
                          done: Callable[[list[Receipt] | None, BaseException | None], None]) -> None:
        self.node.execution_idle.clear()  # admission yields to the block (Node.execution_idle)
        fut = asyncio.get_running_loop().run_in_executor(self._exec_pool, self.node.process_execute_and_store,
                                                         block, commit, hashes)
        # Pruning (a no-op on an archive node) is queued behind the block on the same one-thread pool: the store
        # keeps a single writer, and the deleting overlaps the next height's consensus instead of delaying this
        # block's completion.
        self._exec_pool.submit(self.node.process_prune_after_commit)

        def finished(f: asyncio.Future[list[Receipt]]) -> None:
            self.node.execution_idle.set()
            if f.cancelled() or self._closed:
                return  # the node is stopping; the block was stored or never started (one store batch)
            # The next block is submitted only from this loop, so the new snapshot holds this block's batch (or,
            # after a failed batch, the unchanged store) and perhaps some of the prune batches queued behind it,
            # which delete only nodes of versions older than every one the shell reads (node/pruning.py).
            self._advance_view()
            exc = f.exception()
            if exc is not None:
                log.error("committing block %d failed", block.header.height, exc_info=exc)
                done(None, exc)
            else:
                done(f.result(), None)

        fut.add_done_callback(finished)

    def on_block_stored(self, block: Block, commit: Commit, hashes: list[bytes], receipts: list[Receipt]) -> None:
        self.node.on_block_stored(block, commit, hashes, receipts)


class NodeTxPool:
    """Transaction-pool port over the node's admission (rules, dedup, signatures on the verifier threads)."""

    def __init__(self, node: Node, spawn: Callable[[Any], None]):
        self.node = node
        self._spawn = spawn

    @property
    def mempool(self) -> Mempool:
        return self.node.mempool

    @property
    def results_pending(self) -> bool:
        return self.node.results_pending

    def submit_batch(self, raws: list[bytes], from_client: bool,
                     done: Callable[[Sequence[tuple[bytes, str, str]]], None]) -> None:
        async def run() -> None:
            res = await self.node.process_submit_batch(raws, from_client=from_client)
            done(res.results)

        self._spawn(run())

    def verify_many(self, items: list[tuple[Transaction, bytes]], done: Callable[[Mapping[bytes, bool]], None]) -> None:
        async def run() -> None:
            done(await self.node.process_verify_many(items))

        self._spawn(run())

    def get_verifying_tx(self, tx_hash: bytes) -> Transaction | None:
        return self.node.get_verifying_tx(tx_hash)

    def is_sig_verified(self, tx: Transaction, tx_hash: bytes) -> bool:
        return self.node.is_sig_verified(tx, tx_hash)

    def get_sig_checked(self, txs: Sequence[Transaction], tx_hashes: Sequence[bytes]) -> dict[bytes, bool]:
        return self.node.get_sig_checked(txs, tx_hashes)


class KeySigner:
    """Signer port over the node key held in memory."""

    def __init__(self, node: Node):
        self._suite = node.suite
        self._private_key = node.key.private_key
        self.address = node.key.address

    def sign(self, message: bytes) -> bytes:
        return self._suite.sign(self._private_key, message)


class ConsensusDriver:
    """One node's consensus: the shell wired to the node's IO."""

    def __init__(self, node: Node, transport: Transport | None, timeouts: TimeoutConfig, wal_path: Path,
                 signer_path: Path, *, wal: WalFile | None = None, signer_store: SignerStore | None = None,
                 timing: ShellTiming = ShellTiming()):
        self.node = node
        self.transport = transport
        self.wal: WalFile = wal if wal is not None else Wal(wal_path)
        self._exec_pool = ThreadPoolExecutor(1, thread_name_prefix="execute", initializer=set_os_thread_name,
                                             initargs=("qilian-execute",))
        """One thread: blocks execute one at a time, in height order, off the event loop."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fatal = asyncio.Event()
        self._fatal_reason = ""
        self._stopping = False
        self.snapshots: SnapshotServer | None = None
        """Serves state-sync snapshots to joining nodes (set by the node's wiring when it has peers)."""
        self.ledger = NodeLedger(node, self._exec_pool)
        """The shell's ledger port and its one view of the chain."""
        self.shell = Shell(
            ledger=self.ledger, pool=NodeTxPool(node, self._spawn),
            network=TransportNetwork(transport) if transport is not None else None, clock=AsyncioClock(),
            wal=self.wal, signer_store=signer_store or FileSignerStore(signer_path), signer=KeySigner(node),
            timeouts=timeouts, timing=timing, on_fatal=self._on_fatal)

    # ------------------------------------------------------------------------------------------ views

    @property
    def core(self) -> Core:
        return self.shell.consensus.core

    @property
    def sign_refusals(self) -> int:
        """Signatures the guard refused (0 on a correct node)."""
        return self.shell.consensus.sign_refusals

    @property
    def blocks_synced(self) -> int:
        return self.shell.blocksync.blocks_synced if self.shell.blocksync is not None else 0

    @property
    def relayed(self) -> int:
        return self.shell.consensus.relayed

    @property
    def quorum_delays(self) -> deque[tuple[int, int]]:
        """(vote type, ms) from a round's first vote of a type to a quorum of it (drained by ``/metrics``)."""
        return self.shell.consensus.quorum_delays

    # ------------------------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Replay the WAL, then connect to peers (so they get our re-derived messages); run until stopped or the
        node's state diverges (then raise StateDiverged)."""
        self.shell.start()
        if self.transport is not None:
            await self.transport.start()
        await self._fatal.wait()
        raise StateDiverged(self._fatal_reason)

    def _on_fatal(self, reason: str) -> None:
        self._fatal_reason = reason
        self._fatal.set()

    def stop(self) -> None:
        self._stopping = True
        self.shell.stop()
        for task in list(self._tasks):
            task.cancel()

    def close(self) -> None:
        """Wait for a block still executing (its one store batch finishes or never starts), then release the
        ledger's view and close the WAL."""
        self._exec_pool.shutdown(wait=True, cancel_futures=True)
        self.ledger.close()
        close = getattr(self.wal, "close", None)
        if close is not None:
            close()

    def _spawn(self, coro: Any) -> None:
        if self._stopping:
            coro.close()
            return
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------------------------ transport

    def on_tx_admitted(self, raw: bytes, from_client: bool) -> None:
        """Called by the node after a transaction enters the mempool."""
        self.shell.on_tx_admitted(raw, from_client)

    def on_peer_up(self, peer: Peer) -> None:
        self.shell.on_peer_up(peer.spec.address)

    async def on_message(self, peer: Peer, msg: Any) -> None:
        """Handle one authenticated peer message; the next frame of this peer is read only once its work is done.
        Raises PeerViolation for provably bad input. State-sync requests go to the snapshot server (not a reactor
        of the shell: only the node has a store to serve snapshots from)."""
        if isinstance(msg, GetSnapshot | GetChunk):
            if self.snapshots is not None and self.transport is not None:
                reply = await (self.snapshots.on_get_snapshot(msg) if isinstance(msg, GetSnapshot)
                               else self.snapshots.on_get_chunk(msg))
                self.transport.send(peer.spec.address, reply)
            return
        if isinstance(msg, SnapshotManifest | Chunk):
            return  # answers to a state sync this process no longer runs
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        if self.shell.on_message(peer.spec.address, msg, finished):
            await done
