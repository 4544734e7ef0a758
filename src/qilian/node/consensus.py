"""The consensus shell: drives the pure Tendermint core (:mod:`qilian.consensus`) with real messages, timers,
block assembly, the write-ahead log, the signer guard on disk, and block sync.

What the core decides on is the block *header* (its bytes are the value, its hash the block ID). A proposal carries
the header and the transaction hashes; a node assembles the block from its mempool and fetches the transactions it
lacks from the proposer, then answers the core's validity question with the full block checks. Votes and proposals
are signature-checked here, before they reach the core.

Order of effects (DESIGN, "WAL before send"): every core input is appended to the WAL; before the node's own
proposal or vote leaves, the WAL is synced and the signer state saved. After a crash the WAL replays into a fresh
core, which — being deterministic — re-derives the same messages; the signer guard lets exactly those be re-signed.

A node that is behind (restarted, partitioned, empty data directory) learns so from its peers' Status messages and
fetches the missing blocks with their commits, verifies both against the validator set, executes them and rejoins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qilian.consensus.core import Core
from qilian.consensus.signer import SignerState, SignRefused, check_sign
from qilian.consensus.timeouts import TimeoutConfig
from qilian.consensus.types import (
    Broadcast,
    Decide,
    EvidenceFound,
    Output,
    PrecommitReceived,
    PrevoteReceived,
    Proposal,
    ProposalReceived,
    ProposalValueReady,
    RequestValue,
    ScheduleTimeout,
    TimeoutElapsed,
    TimeoutKind,
    ValidateValue,
    ValidityAnswer,
    Vote,
    VoteType,
)
from qilian.consensus.validators import ValidatorSet as ConsensusValidators
from qilian.execution.block import BlockInvalid, check_block, check_commit, make_header
from qilian.execution.rules import TxRejected, check_tx_window
from qilian.mempool.pool import PoolEntry
from qilian.node.signer_store import load_signer_state, save_signer_state
from qilian.node.wal import Wal
from qilian.p2p.messages import (
    MAX_BLOCKS_PER_REPLY,
    MAX_FRAME_BYTES,
    MAX_TXS_PER_BATCH,
    Blocks,
    BlockWithCommit,
    GetBlocks,
    GetTxs,
    Hello,
    ProposalMsg,
    Status,
    TxBatch,
    compute_proposal_sign_bytes,
)
from qilian.p2p.transport import Peer, PeerViolation, Transport
from qilian.types.codec import CodecError
from qilian.types.core import (
    PRECOMMIT,
    PREVOTE,
    Block,
    Commit,
    CommitSig,
    Transaction,
    compute_tx_hash,
    compute_vote_sign_bytes,
)
from qilian.types.core import Vote as SignedVote

if TYPE_CHECKING:
    from qilian.node.node import Node

log = logging.getLogger("qilian.consensus")

FETCH_TIMEOUT_S = 2.0
"""How long block assembly waits for missing transactions before answering "invalid" (costs one round at most)."""
STATUS_INTERVAL_S = 1.0
"""How often a node tells its peers its height (drives block sync)."""
SYNC_BATCH = 32
"""Blocks asked for per sync request (a reply is also bounded by the frame size)."""
SYNC_TIMEOUT_S = 5.0
"""A sync request unanswered this long is abandoned and re-sent to another peer."""
TX_GOSSIP_INTERVAL_S = 0.01
"""Admitted transactions are batched to peers at this interval."""
MAX_FUTURE_MESSAGES = 4096
"""Verified consensus messages kept for heights this node has not started (fed to the core when it does)."""
MAX_EVIDENCE = 1000
"""Equivocation evidence kept in memory (newest first to go into blocks once evidence is carried on chain)."""
MAX_FETCHED_TXS = 20_000
"""Transactions fetched for proposals kept per height (outside the mempool)."""


class StateDiverged(RuntimeError):
    """This node computed a different state or receipts root than the blocks > 2/3 of the power signed."""


@dataclass(frozen=True, slots=True)
class _Parts:
    """What arrived with a proposal: enough to assemble its block."""

    msg: ProposalMsg
    sender: bytes | None


def to_consensus_validators(genesis_validators: Any) -> ConsensusValidators:
    """The core's view of a validator set: address → power."""
    return ConsensusValidators({v.address: v.power for v in genesis_validators.validators})


class ConsensusDriver:
    """One node's consensus: the core plus everything with IO around it."""

    def __init__(self, node: Node, transport: Transport | None, timeouts: TimeoutConfig, wal_path: Path,
                 signer_path: Path):
        self.node = node
        self.transport = transport
        self.suite = node.suite
        self.chain_id = node.rules.chain_id
        self.vset = to_consensus_validators(node.genesis.validators)
        self.pubkeys = {v.address: v.public_key for v in node.genesis.validators.validators}
        self.core = Core(node.key.address, self.vset, timeouts, id_of=self.suite.hash)
        self.wal = Wal(wal_path)
        self.signer_path = signer_path
        self.signer: SignerState = load_signer_state(signer_path)
        self.started = False
        """Whether consensus runs for tip + 1 (otherwise it waits for a reason to make a block)."""
        self.blocks: dict[bytes, Block] = {}
        """Assembled blocks of this height by block ID (own proposals and validated ones)."""
        self.parts: dict[bytes, _Parts] = {}
        """Received proposals by block ID."""
        self.sigs: dict[tuple[int, int, int, bytes, bytes], bytes] = {}
        """(type, height, round, block ID, validator) → signature, for commits and dedup."""
        self.own: list[Any] = []
        """This node's signed messages of the current height (re-sent to a peer that (re)connects)."""
        self._signed: dict[tuple[int, int, int], ProposalMsg | SignedVote] = {}
        """Own signed messages of the current height by (height, round, step)."""
        self.fetched: dict[bytes, tuple[Transaction, int]] = {}
        """Transactions fetched for proposals, by hash."""
        self.tx_arrived = asyncio.Event()
        self.gossip_out: list[bytes] = []
        self.last_commit_at = 0.0
        self.peer_activity = False
        """A peer sent a message for tip + 1: start even without transactions of our own."""
        self.awaiting_block: int | None = None
        """A height decided without our having its transactions: fetched by sync."""
        self.sync_pending_since: float | None = None
        self.blocks_synced = 0
        self.evidence: list[Any] = []
        self.future: dict[int, list[tuple[Any, list[Any]]]] = {}
        """Verified proposals and votes for heights not started yet."""
        self.future_count = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._fatal = asyncio.Event()
        self._fatal_reason = ""

    # ------------------------------------------------------------------------------------------ lifecycle

    def get_tip_height(self) -> int:
        return self.node.get_tip().height

    async def run(self) -> None:
        """Replay the WAL, then connect to peers (so they get our re-derived messages), then pace heights."""
        self._replay()
        if self.transport is not None:
            await self.transport.start()
        loop_tasks = [self._pacer(), self._gossip_loop(), self._wait_fatal()]
        if self.transport is not None:
            loop_tasks.append(self._status_loop())
        await asyncio.gather(*loop_tasks)

    async def _wait_fatal(self) -> None:
        await self._fatal.wait()
        raise StateDiverged(self._fatal_reason)

    def _on_divergence(self, reason: str) -> None:
        """Our state differs from what > 2/3 of the power decided: stop loudly rather than serve wrong answers."""
        log.critical("STATE DIVERGED — stopping this node: %s. Its data directory is inconsistent with the "
                     "chain; wipe it and restart to resync.", reason)
        self._fatal_reason = reason
        self._fatal.set()

    def stop(self) -> None:
        self._stopping = True
        for t in self._timers:
            t.cancel()
        for task in list(self._tasks):
            task.cancel()

    def close(self) -> None:
        self.wal.close()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------------------------ pacing

    def is_height_due(self) -> bool:
        """Start the next height when there is work (transactions, or results a header must commit), when a peer
        has already started it, or on every interval when the chain makes empty blocks. Block 1 is always made at
        once: a new network shows it can decide before anyone depends on it."""
        node = self.node
        return bool(len(node.mempool) or node.results_pending or self.peer_activity
                    or node.genesis.params.create_empty_blocks or self.get_tip_height() == 0)

    async def _pacer(self) -> None:
        interval = self.node.genesis.params.block_interval_ms / 1000
        while not self._stopping:
            if not self.started and self.awaiting_block is None:
                wait = self.last_commit_at + interval - time.monotonic()
                if wait <= 0 and self.is_height_due():
                    self._start_height(self.get_tip_height() + 1)
                    continue
                self.tx_arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.tx_arrived.wait(), max(wait, 0.02) if wait > 0 else 0.05)
                continue
            await asyncio.sleep(0.05)

    def on_tx_admitted(self, raw: bytes, from_client: bool) -> None:
        """Called by the node after a transaction enters the mempool."""
        if from_client and self.transport is not None:
            self.gossip_out.append(raw)
        self.tx_arrived.set()

    async def _gossip_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(TX_GOSSIP_INTERVAL_S)
            if self.gossip_out and self.transport is not None:
                out, self.gossip_out = self.gossip_out, []
                for i in range(0, len(out), MAX_TXS_PER_BATCH):
                    self.transport.broadcast(TxBatch(tuple(out[i:i + MAX_TXS_PER_BATCH])))
            elif self.gossip_out:
                self.gossip_out = []

    def _start_height(self, height: int) -> None:
        self.wal.reset(height)
        self._clear_height()
        self.started = True
        self._execute(self.core.start_height(height, self.vset), replay=False)
        waiting = self.future.pop(height, [])
        self.future = {h: v for h, v in self.future.items() if h > height}
        self.future_count = sum(len(v) for v in self.future.values())
        for inp, record in waiting:
            if self.core.height == height and self.started:
                self._feed(inp, record)

    def _clear_height(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers = []
        self.blocks.clear()
        tip = self.get_tip_height()
        self.parts = {k: v for k, v in self.parts.items() if v.msg.header.height > tip}
        self.own = []
        self._signed = {}
        self.peer_activity = False
        self.sigs = {k: v for k, v in self.sigs.items() if k[1] > tip}
        if len(self.fetched) > MAX_FETCHED_TXS:
            self.fetched.clear()

    # ------------------------------------------------------------------------------------------ WAL replay

    def _replay(self) -> None:
        """Resume the height the WAL was written for, if it is still the next one to decide."""
        records = self.wal.records
        tip = self.get_tip_height()
        if not records or records[0] != ["height", tip + 1]:
            return
        log.info("replaying %d WAL records for height %d", len(records) - 1, tip + 1)
        for rec in records[1:]:
            if rec[0] == "s":  # own signed messages: re-sent as they were, never signed anew
                wire = ProposalMsg.decode(rec[2]) if rec[1] == "p" else SignedVote.decode(rec[2])
                self._signed[self._own_key(wire)] = wire
        records = [r for r in records if r[0] != "s"]
        self.started = True
        outs = self.core.start_height(tip + 1, self.vset)
        pending_request: RequestValue | None = None
        pending_validate: dict[bytes, ValidateValue] = {}

        def absorb(outputs: list[Output]) -> None:
            nonlocal pending_request
            rest: list[Output] = []
            for o in outputs:
                if isinstance(o, RequestValue):
                    pending_request = o
                elif isinstance(o, ValidateValue):
                    pending_validate[o.value_id] = o
                else:
                    rest.append(o)
            self._execute(rest, replay=True)

        absorb(outs)
        for rec in records[1:]:
            try:
                inp = self._input_from_record(rec)
            except (CodecError, KeyError, ValueError, IndexError, TypeError) as exc:
                log.warning("WAL record unreadable (%s); replay stops there", exc)
                break
            if isinstance(inp, ProposalValueReady):
                pending_request = None
            elif isinstance(inp, ValidityAnswer):
                pending_validate.pop(inp.value_id, None)
            absorb(self.core.process(inp))
        if pending_request is not None:
            self._execute([pending_request], replay=False)
        if pending_validate:
            self._execute(list(pending_validate.values()), replay=False)

    def _input_from_record(self, rec: list[Any]) -> Any:
        kind = rec[0]
        if kind == "p":
            msg = ProposalMsg.decode(rec[1])
            proposal = self._to_proposal(msg)
            self.parts[proposal.value_id] = _Parts(msg, None)
            return ProposalReceived(proposal)
        if kind == "v":
            sv = SignedVote.decode(rec[1])
            self.sigs[(sv.kind, sv.height, sv.round, sv.block_id, sv.validator)] = sv.signature
            return self._to_input_vote(sv)
        if kind == "t":
            return TimeoutElapsed(TimeoutKind(rec[1]), rec[2], rec[3])
        if kind == "r":
            block = Block.decode(rec[3])
            self.blocks[self.suite.hash(block.header.encode())] = block
            return ProposalValueReady(rec[1], rec[2], block.header.encode())
        if kind == "a":
            if rec[2] and rec[3]:
                self.blocks[rec[1]] = Block.decode(rec[3])
            return ValidityAnswer(rec[1], bool(rec[2]))
        raise ValueError(f"unknown WAL record kind {kind!r}")

    # ------------------------------------------------------------------------------------------ core IO

    def _feed(self, inp: Any, record: list[Any]) -> None:
        """Log an input, give it to the core, carry out what it asks."""
        self.wal.append(record)
        self._execute(self.core.process(inp), replay=False)

    def _execute(self, outs: list[Output], replay: bool) -> None:
        signed = [w for o in outs if isinstance(o, Broadcast) and (w := self._sign(o.message)) is not None]
        if signed and not replay:
            self.wal.sync()  # WAL (inputs and the signed messages) before send
            if self.transport is not None:
                for w in signed:
                    self.transport.broadcast(w)
        for o in outs:
            if isinstance(o, Broadcast):
                continue
            elif isinstance(o, ScheduleTimeout):
                self._schedule(o)
            elif isinstance(o, RequestValue):
                self._on_request_value(o)
            elif isinstance(o, ValidateValue):
                self._spawn(self._validate(o))
            elif isinstance(o, Decide):
                self._on_decide(o)
            elif isinstance(o, EvidenceFound):
                log.warning("equivocation by %s at height %d round %d", o.evidence.first.validator.hex(),
                            o.evidence.first.height, o.evidence.first.round)
                self.evidence.append(o.evidence)
                del self.evidence[:-MAX_EVIDENCE]

    def _schedule(self, o: ScheduleTimeout) -> None:
        def fire() -> None:
            if self._stopping or self.core.height != o.height or self.core.round != o.round:
                return
            self._feed(TimeoutElapsed(o.kind, o.height, o.round), ["t", int(o.kind), o.height, o.round])

        self._timers.append(asyncio.get_running_loop().call_later(o.duration_ms / 1000, fire))
        if len(self._timers) > 64:
            self._timers = [t for t in self._timers if not t.cancelled() and t.when() > time.monotonic() - 1]

    @staticmethod
    def _own_key(m: ProposalMsg | SignedVote | Proposal | Vote) -> tuple[int, int, int]:
        """(height, round, step) of an own message: at most one signed message each."""
        if isinstance(m, ProposalMsg):
            return (m.header.height, m.round, 0)
        if isinstance(m, Proposal):
            return (m.height, m.round, 0)
        if isinstance(m, SignedVote):
            return (m.height, m.round, m.kind)
        return (m.height, m.round, PREVOTE if m.type == VoteType.PREVOTE else PRECOMMIT)

    def _sign(self, message: Proposal | Vote) -> ProposalMsg | SignedVote | None:
        """Pass the signer guard (persisting its state first), sign, log in the WAL and remember; the caller
        syncs the WAL and sends. A message already signed before a restart is reused exactly as it was."""
        earlier = self._signed.get(self._own_key(message))
        if earlier is not None:
            if isinstance(earlier, SignedVote):
                self.sigs[(earlier.kind, earlier.height, earlier.round, earlier.block_id, earlier.validator)] = \
                    earlier.signature
            self.own.append(earlier)
            return earlier
        try:
            new_state = check_sign(self.signer, message)
        except SignRefused as exc:
            log.error("signer guard: %s", exc)
            return None
        if new_state != self.signer:
            save_signer_state(self.signer_path, new_state)
            self.signer = new_state
        key = self.node.key
        wire: Any
        if isinstance(message, Proposal):
            block = self.blocks.get(message.value_id)
            if block is None:
                log.error("no block for own proposal %s", message.value_id.hex()[:16])
                return None
            vr = message.valid_round + 1
            sig = self.suite.sign(key.private_key, compute_proposal_sign_bytes(
                self.chain_id, message.height, message.round, message.value_id, vr))
            hashes = tuple(compute_tx_hash(self.suite, tx.body) for tx in block.txs)
            wire = ProposalMsg(message.round, vr, block.header, hashes, block.last_commit, message.proposer, sig)
        else:
            kind = PREVOTE if message.type == VoteType.PREVOTE else PRECOMMIT
            bid = message.value_id or b""
            sig = self.suite.sign(key.private_key, compute_vote_sign_bytes(
                self.chain_id, kind, message.height, message.round, bid))
            self.sigs[(kind, message.height, message.round, bid, message.validator)] = sig
            wire = SignedVote(kind, message.height, message.round, bid, message.validator, sig)
        self.wal.append(["s", "p" if isinstance(wire, ProposalMsg) else "v", wire.encode()])
        self._signed[self._own_key(message)] = wire
        self.own.append(wire)
        return wire

    def _on_request_value(self, o: RequestValue) -> None:
        """getValue(): build a block from the mempool on top of the tip."""
        node = self.node
        tip = node.get_tip()
        if o.height != tip.height + 1:
            return
        parent = node.get_parent_info(tip)
        dead: list[bytes] = []

        def includable(e: PoolEntry) -> bool:
            try:
                check_tx_window(node.rules, e.tx, o.height)
            except TxRejected:
                dead.append(e.tx_hash)
                return False
            return True

        params = node.genesis.params
        entries = node.mempool.get_batch(params.max_block_txs, params.max_block_bytes - 64 * 1024, includable)
        # Committed transactions leave the mempool when their block commits; one batched lookup guards the rest.
        on_chain = node.store.get_committed(e.tx_hash for e in entries)
        if on_chain:
            dead += on_chain
            entries = [e for e in entries if e.tx_hash not in on_chain]
        node.mempool.process_remove(dead)
        hashes = [e.tx_hash for e in entries]
        last_commit = node.store.get_commit(tip.height) if tip.height else None
        header = make_header(node.rules, parent, int(time.time() * 1000), hashes, last_commit, node.key.address)
        block = Block(header, tuple(e.tx for e in entries), last_commit)
        value = header.encode()
        self.blocks[self.suite.hash(value)] = block
        self._feed(ProposalValueReady(o.height, o.round, value), ["r", o.height, o.round, block.encode()])

    async def _validate(self, o: ValidateValue) -> None:
        """valid(v): assemble the proposed block (fetching missing transactions) and run the block checks."""
        block = self.blocks.get(o.value_id)
        valid = block is not None
        if block is None:
            parts = self.parts.get(o.value_id)
            if parts is not None:
                block = await self._assemble(parts)
            valid = False
            if block is not None and parts is not None:
                # Signatures not yet checked (still in a gossip batch, or fetched) are checked off the event
                # loop, each once; check_block then finds every verdict cached.
                verdicts = await self.node.process_verify_many(
                    list(zip(block.txs, parts.msg.tx_hashes, strict=True)))
                if not all(verdicts.values()):
                    block = None
                    log.warning("proposal %s at height %d carries a transaction with a bad signature",
                                o.value_id.hex()[:16], o.height)
            if block is not None:
                try:
                    tip = self.node.get_tip()
                    if block.header.height != tip.height + 1:
                        raise BlockInvalid("proposal is not for the next height")
                    hashes = list(parts.msg.tx_hashes) if parts else []
                    on_chain = self.node.store.get_committed(hashes)
                    check_block(self.node.rules, self.node.get_parent_info(tip), block, hashes,
                                on_chain.__contains__, self.node.sig_ok)
                    valid = True
                except BlockInvalid as exc:
                    log.warning("proposal %s at height %d is invalid: %s", o.value_id.hex()[:16], o.height, exc)
        if self._stopping or self.core.height != o.height or not self.started:
            return
        if valid and block is not None:
            self.blocks[o.value_id] = block
        self._feed(ValidityAnswer(o.value_id, valid),
                   ["a", o.value_id, valid, block.encode() if valid and block is not None else b""])

    async def _assemble(self, parts: _Parts) -> Block | None:
        msg = parts.msg
        deadline = time.monotonic() + FETCH_TIMEOUT_S
        asked = False
        while True:
            txs: list[Transaction] = []
            missing: list[bytes] = []
            for h in msg.tx_hashes:
                e = self.node.mempool.get(h)
                if e is not None:
                    txs.append(e.tx)
                elif h in self.fetched:
                    txs.append(self.fetched[h][0])
                elif h in self.node.verifying:
                    txs.append(self.node.verifying[h][0])
                else:
                    missing.append(h)
            if not missing:
                return Block(msg.header, tuple(txs), msg.last_commit)
            if time.monotonic() >= deadline or self.transport is None:
                log.warning("proposal at height %d: %d transactions could not be fetched", msg.header.height,
                            len(missing))
                return None
            if not asked:
                asked = True
                req = GetTxs(tuple(missing[:10_000]))
                if parts.sender is None or not self.transport.send(parts.sender, req):
                    self.transport.broadcast(req)
            self.tx_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.tx_arrived.wait(), 0.05)

    def _on_decide(self, d: Decide) -> None:
        """Commit the decided block with the precommits that decided it, then wait for the next height."""
        block_id = self.suite.hash(d.value)
        block = self.blocks.get(block_id)
        self.started = False
        if block is None:
            log.warning("decided height %d without its transactions; fetching it from peers", d.height)
            self.awaiting_block = d.height
            self._request_sync(force=True)
            return
        sigs = []
        for v in sorted(d.precommits, key=lambda v: v.validator):
            s = self.sigs.get((PRECOMMIT, d.height, d.round, block_id, v.validator))
            if s is not None:
                sigs.append(CommitSig(v.validator, s))
        commit = Commit(d.height, d.round, block_id, tuple(sigs))
        hashes = [compute_tx_hash(self.suite, tx.body) for tx in block.txs]
        tip = self.node.get_tip()
        if (block.header.state_root, block.header.receipts_root) != (tip.state_root, tip.receipts_root):
            self._on_divergence(f"block {d.height} decided by the network carries state root "
                                f"{block.header.state_root.hex()[:16]}…, this node has {tip.state_root.hex()[:16]}…")
            return
        self.node.process_apply_block(block, commit, hashes)
        for h in hashes:
            self.fetched.pop(h, None)
        self.last_commit_at = time.monotonic()
        self._clear_height()

    # ------------------------------------------------------------------------------------------ peer messages

    def on_peer_up(self, peer: Peer) -> None:
        """A peer (re)connected: tell it where we are and re-send our messages of this height."""
        assert self.transport is not None
        self.transport.send(peer.spec.address, Status(self.get_tip_height(), max(self.core.round, 0)))
        for m in self.own:
            self.transport.send(peer.spec.address, m)
        if peer.height > self.get_tip_height():
            self._request_sync()

    async def on_message(self, peer: Peer, msg: Any) -> None:
        """Handle one authenticated peer message. Raises PeerViolation for provably bad input."""
        if isinstance(msg, SignedVote):
            self._on_vote(msg)
        elif isinstance(msg, ProposalMsg):
            self._on_proposal(msg, peer.spec.address)
        elif isinstance(msg, TxBatch):
            await self._on_txs(msg)
        elif isinstance(msg, GetTxs):
            self._on_get_txs(peer, msg)
        elif isinstance(msg, Status):
            peer.height = msg.height
            if msg.height > self.get_tip_height():
                self._request_sync()
        elif isinstance(msg, GetBlocks):
            self._on_get_blocks(peer, msg)
        elif isinstance(msg, Blocks):
            self._on_blocks(msg)
        elif isinstance(msg, Hello):
            raise PeerViolation("second Hello on a connection")

    def _is_relevant(self, height: int) -> bool:
        """Whether a consensus message for `height` matters; a message from the future means we are behind."""
        tip = self.get_tip_height()
        if height > tip + 1:
            self._request_sync()
        return height > tip

    def _deliver(self, height: int, inp: Any, record: list[Any]) -> None:
        """Feed a verified message to the core now, or keep it until its height starts (bounded)."""
        if self.started and self.core.height == height:
            self._feed(inp, record)
            return
        if height == self.get_tip_height() + 1:
            self.peer_activity = True
        if self.future_count >= MAX_FUTURE_MESSAGES:
            return
        self.future.setdefault(height, []).append((inp, record))
        self.future_count += 1

    def _on_vote(self, sv: SignedVote) -> None:
        if sv.kind not in (PREVOTE, PRECOMMIT):
            raise PeerViolation(f"vote of unknown kind {sv.kind}")
        key = (sv.kind, sv.height, sv.round, sv.block_id, sv.validator)
        if key in self.sigs or not self._is_relevant(sv.height):
            return
        pub = self.pubkeys.get(sv.validator)
        if pub is None:
            raise PeerViolation(f"vote by {sv.validator.hex()}, not a validator")
        if not self.suite.verify(pub, compute_vote_sign_bytes(self.chain_id, sv.kind, sv.height, sv.round,
                                                              sv.block_id), sv.signature):
            raise PeerViolation("vote signature does not verify")
        self.sigs[key] = sv.signature
        self._deliver(sv.height, self._to_input_vote(sv), ["v", sv.encode()])

    def _to_input_vote(self, sv: SignedVote) -> PrevoteReceived | PrecommitReceived:
        vtype = VoteType.PREVOTE if sv.kind == PREVOTE else VoteType.PRECOMMIT
        v = Vote(vtype, sv.height, sv.round, sv.block_id or None, sv.validator)
        return PrevoteReceived(v) if vtype == VoteType.PREVOTE else PrecommitReceived(v)

    def _to_proposal(self, msg: ProposalMsg) -> Proposal:
        value = msg.header.encode()
        return Proposal(msg.header.height, msg.round, value, self.suite.hash(value), msg.valid_round - 1,
                        msg.proposer)

    def _on_proposal(self, msg: ProposalMsg, sender: bytes) -> None:
        h = msg.header
        if not self._is_relevant(h.height):
            return
        p = self._to_proposal(msg)
        if p.value_id in self.parts and self.parts[p.value_id].msg.round == msg.round:
            return
        pub = self.pubkeys.get(msg.proposer)
        if pub is None:
            raise PeerViolation(f"proposal by {msg.proposer.hex()}, not a validator")
        if not self.suite.verify(pub, compute_proposal_sign_bytes(self.chain_id, h.height, msg.round, p.value_id,
                                                                  msg.valid_round), msg.signature):
            raise PeerViolation("proposal signature does not verify")
        if len(msg.tx_hashes) != h.tx_count:
            raise PeerViolation("proposal lists a different number of transactions than its header")
        self.parts[p.value_id] = _Parts(msg, sender)
        self._deliver(h.height, ProposalReceived(p), ["p", msg.encode()])

    async def _on_txs(self, batch: TxBatch) -> None:
        """Transactions relayed by a peer (gossip, or answers to GetTxs): admitted like a client's, signatures
        verified on the verifier threads. Valid ones the mempool cannot take (full, or already past a rule that
        depends on our height) are kept aside for assembling the proposal that needs them."""
        height = self.get_tip_height()
        res = await self.node.process_submit_batch(list(batch.txs), from_client=False)
        for raw, (th, status, message) in zip(batch.txs, res.results, strict=True):
            if status in ("malformed", "bad_signature"):
                raise PeerViolation(f"peer relayed a transaction that is {status}: {message}")
            if status not in ("accepted", "known", "committed") and th and self.node.sig_ok.get(th) \
                    and th not in self.fetched:
                self.fetched[th] = (Transaction.decode(raw), height)
        self.tx_arrived.set()

    def _on_get_txs(self, peer: Peer, req: GetTxs) -> None:
        assert self.transport is not None
        by_hash: dict[bytes, Transaction] = {}
        for b in self.blocks.values():
            for t in b.txs:
                by_hash[compute_tx_hash(self.suite, t.body)] = t
        out: list[bytes] = []
        size = 0
        for h in req.hashes:
            e = self.node.mempool.get(h)
            tx: Transaction | None = (e.tx if e is not None else
                                      by_hash.get(h) or (self.fetched[h][0] if h in self.fetched else None))
            if tx is None:
                continue
            raw = tx.encode()
            size += len(raw) + 8
            if size > MAX_FRAME_BYTES - 1024 or len(out) >= MAX_TXS_PER_BATCH:
                break
            out.append(raw)
        if out:
            self.transport.send(peer.spec.address, TxBatch(tuple(out)))

    # ------------------------------------------------------------------------------------------ block sync

    async def _status_loop(self) -> None:
        assert self.transport is not None
        while not self._stopping:
            self.transport.broadcast(Status(self.get_tip_height(), max(self.core.round, 0)))
            if self.sync_pending_since is not None and time.monotonic() - self.sync_pending_since > SYNC_TIMEOUT_S:
                self.sync_pending_since = None
            if any(p.height > self.get_tip_height() for p in self.transport.peers.values()):
                self._request_sync()
            await asyncio.sleep(STATUS_INTERVAL_S)

    def _request_sync(self, force: bool = False) -> None:
        """Ask the most advanced peer for the blocks after our tip (one request in flight)."""
        if self.transport is None or (self.sync_pending_since is not None and not force):
            return
        tip = self.get_tip_height()
        ahead = [p for p in self.transport.peers.values() if p.height > tip]
        if not ahead:
            return
        best = max(ahead, key=lambda p: (p.height, p.spec.address))
        if self.transport.send(best.spec.address, GetBlocks(tip + 1, SYNC_BATCH)):
            self.sync_pending_since = time.monotonic()

    def _on_get_blocks(self, peer: Peer, req: GetBlocks) -> None:
        assert self.transport is not None
        store = self.node.store
        tip = self.get_tip_height()
        items: list[BlockWithCommit] = []
        size = 0
        for h in range(req.start, min(req.start + min(req.count, MAX_BLOCKS_PER_REPLY), tip + 1)):
            raw = store.get_block_bytes(h)
            commit = store.get_commit(h)
            if raw is None or commit is None:
                break
            craw = commit.encode()
            size += len(raw) + len(craw) + 16
            if items and size > MAX_FRAME_BYTES - 64 * 1024:
                break
            items.append(BlockWithCommit(raw, craw))
        self.transport.send(peer.spec.address, Blocks(tuple(items)))

    def _on_blocks(self, msg: Blocks) -> None:
        """Verify and apply synced blocks in order; a bad one is the sender's fault."""
        self.sync_pending_since = None
        applied = 0
        for item in msg.items:
            tip = self.node.get_tip()
            try:
                block = Block.decode(item.block)
                commit = Commit.decode(item.commit)
            except CodecError as exc:
                raise PeerViolation(f"synced block does not decode: {exc}") from None
            if block.header.height <= tip.height:
                continue
            if block.header.height != tip.height + 1:
                break
            hashes = [compute_tx_hash(self.suite, tx.body) for tx in block.txs]
            try:
                block_id = self.suite.hash(block.header.encode())
                check_commit(self.suite, self.chain_id, self.node.genesis.validators, commit, block_id,
                             block.header.height)
            except BlockInvalid as exc:
                raise PeerViolation(f"synced block {block.header.height} has no valid commit: {exc}") from None
            if block.header.prev_block_id != tip.block_id:
                # Signed by > 2/3 of the power yet not on our chain: we hold a block the network never decided.
                self._on_divergence(f"block {block.header.height} signed by the validators does not extend "
                                    f"this node's block {tip.height}")
                return
            try:
                check_block(self.node.rules, self.node.get_parent_info(tip), block, hashes,
                            self.node.store.get_committed(hashes).__contains__, self.node.sig_ok)
            except BlockInvalid as exc:
                if block.header.state_root != tip.state_root or block.header.receipts_root != tip.receipts_root:
                    self._on_divergence(f"synced block {block.header.height}: {exc}")
                    return
                raise PeerViolation(f"synced block {block.header.height} is invalid: {exc}") from None
            self.node.process_apply_block(block, commit, hashes)
            applied += 1
        if applied:
            self.blocks_synced += applied
            tip_h = self.get_tip_height()
            log.info("synced %d blocks; now at height %d", applied, tip_h)
            if self.awaiting_block is not None and tip_h >= self.awaiting_block:
                self.awaiting_block = None
            if self.core.height <= tip_h:
                # Whatever round we were in is history; the next height starts from the pacer.
                self.started = False
                self.last_commit_at = 0.0
                self._clear_height()
            self._request_sync()
