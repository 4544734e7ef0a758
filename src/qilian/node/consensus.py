"""The consensus shell: drives the pure Tendermint core (:mod:`qilian.consensus`) with real messages, timers,
block assembly, the write-ahead log, the signer guard on disk, and block sync.

What the core decides on is the block *header* (its bytes are the value, its hash the block ID). A proposal carries
the header and the transaction hashes; a node assembles the block from its mempool and fetches the transactions it
lacks from the proposer, then answers the core's validity question with the full block checks. Votes and proposals
are signature-checked here, before they reach the core.

Order of durability (docs/spec/consensus.md): every core input is appended to the WAL (unbuffered); before the
signer guard's state is saved the WAL is synced; the signed message is appended and synced before it leaves; an own
vote is counted by the core only after that. After a crash the WAL replays into a fresh core, which — being
deterministic — re-derives the same messages; the signer guard lets exactly those be re-signed. A decision is
stored only with a commit that passes ``check_commit``; the block executes on one worker thread, off the event
loop, and the next height starts once its state root is known.

Peers' proposals and votes are bounded before they are kept (node/limits.py: height and round windows, per-slot
and per-round counts, this round's proposer only), relayed once to the other peers, and re-sent to a peer that
(re)connects and by anti-entropy while a height is stuck — a cut link or a crashed node's lost frames cost time,
never liveness.

A node that is behind (restarted, partitioned, empty data directory) learns so from its peers' Status messages and
fetches the missing blocks with their commits, verifies both against the validator set, executes them and rejoins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
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
    Step,
    TimeoutElapsed,
    TimeoutKind,
    ValidateValue,
    ValidityAnswer,
    Vote,
    VoteType,
)
from qilian.consensus.validators import ValidatorSet as ConsensusValidators
from qilian.execution.block import BlockInvalid, check_block, check_commit, compute_txs_root, make_header
from qilian.execution.limits import check_block_limits
from qilian.execution.rules import TxRejected, check_tx_window
from qilian.mempool.pool import PoolEntry
from qilian.node.limits import (
    ANTI_ENTROPY_S,
    FETCH_RETRY_S,
    FUTURE_HEIGHT_WINDOW,
    MAX_ANTI_ENTROPY_BATCH,
    MAX_FAR_ROUND_MESSAGES,
    MAX_FUTURE_MESSAGES,
    MAX_HELD_PER_HEIGHT,
    MAX_PROPOSALS_PER_ROUND,
    MAX_VALUES_PER_SLOT,
    ROUND_WINDOW,
)
from qilian.node.signer_store import load_signer_state, save_signer_state
from qilian.node.wal import Wal
from qilian.p2p.messages import (
    MAX_BLOCKS_PER_REPLY,
    MAX_FRAME_BYTES,
    MAX_HASHES,
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
    ValidatorSet,
    compute_commit_hash,
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


class ConsensusDriver:
    """One node's consensus: the core plus everything with IO around it."""

    def __init__(self, node: Node, transport: Transport | None, timeouts: TimeoutConfig, wal_path: Path,
                 signer_path: Path):
        self.node = node
        self.transport = transport
        self.suite = node.suite
        self.chain_id = node.rules.chain_id
        self.params = node.genesis.params
        self.valsets = node.valsets
        """Validator set of each height, from chain state (node/valsets.py)."""
        self.address = node.key.address
        # The core counts our own votes only once we have signed them (see _on_broadcast).
        self.core = Core(self.address, self._get_vset(self.get_tip_height() + 1), timeouts, id_of=self.suite.hash,
                         count_own_votes=False,
                         max_future_rounds=ROUND_WINDOW)
        self.wal = Wal(wal_path)
        self.signer_path = signer_path
        self.signer: SignerState = load_signer_state(signer_path)
        self.sign_refusals = 0
        """Signatures the guard refused (0 on a correct node; exposed for tests)."""
        self.started = False
        """Whether consensus runs for tip + 1 (otherwise it waits for a reason to make a block)."""
        self.blocks: dict[bytes, Block] = {}
        """Assembled blocks of this height by block ID (own proposals and validated ones)."""
        self.parts: dict[bytes, _Parts] = {}
        """Received proposals by block ID."""
        self._parts_per_round: dict[tuple[int, int], int] = {}
        """(height, round) → proposals kept (≤ MAX_PROPOSALS_PER_ROUND)."""
        self.sigs: dict[tuple[int, int, int, bytes, bytes], bytes] = {}
        """(type, height, round, block ID, validator) → signature, for commits and dedup."""
        self._slot_values: dict[tuple[int, int, int, bytes], int] = {}
        """(height, round, type, validator) → distinct votes kept (≤ MAX_VALUES_PER_SLOT)."""
        self._far: dict[tuple[int, bytes], tuple[int, int]] = {}
        """(height, validator) → (highest round, count) of messages taken beyond ROUND_WINDOW."""
        self.held: dict[int, list[ProposalMsg | SignedVote]] = {}
        """Other validators' verified messages by height (≤ MAX_HELD_PER_HEIGHT): re-sent to a (re)connecting peer
        and by anti-entropy, so a message lost in a crash or on a cut link reaches everyone eventually."""
        self.own: list[ProposalMsg | SignedVote] = []
        """This node's signed messages of the current height (re-sent to a peer that (re)connects)."""
        self._signed: dict[tuple[int, int, int], ProposalMsg | SignedVote] = {}
        """Own signed messages of the current height by (height, round, step)."""
        self._fed_own: set[tuple[int, int, int]] = set()
        """Own votes the core has been given (it counts an own vote only when fed it)."""
        self.fetched: dict[bytes, tuple[Transaction, int]] = {}
        """Transactions fetched for proposals, by hash."""
        self.tx_arrived = asyncio.Event()
        self.gossip_out: list[bytes] = []
        self.last_commit_at = 0.0
        self.peer_activity = False
        """A peer sent a message for tip + 1: start even without transactions of our own."""
        self.awaiting_block: int | None = None
        """A height decided without our having its transactions: fetched by sync."""
        self.pending_decision: tuple[int, int, bytes] | None = None
        """(height, round, block ID) decided whose precommit signatures do not yet pass check_commit: completed by
        further precommits or replaced by block sync; nothing is stored until then."""
        self.applying: int | None = None
        """Height whose block is executing on the execution thread (the next height waits for its state root)."""
        self._apply_lock = asyncio.Lock()
        self._exec_pool = ThreadPoolExecutor(1, thread_name_prefix="execute")
        """One thread: blocks execute one at a time, in height order, off the event loop."""
        self.sync_pending_since: float | None = None
        self.blocks_synced = 0
        self.evidence: list[Any] = []
        self.future: dict[int, list[tuple[Any, list[Any]]]] = {}
        """Verified proposals and votes for heights not started yet."""
        self.future_count = 0
        self.relayed = 0
        """Consensus messages of other validators relayed to peers."""
        self._ae_turn = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._fatal = asyncio.Event()
        self._fatal_reason = ""

    # ------------------------------------------------------------------------------------------ lifecycle

    def get_tip_height(self) -> int:
        return self.node.get_tip().height

    def _get_vset(self, height: int) -> ConsensusValidators:
        """The core's validator set of a height the node is about to run (tip + 1: always known)."""
        vset = self.valsets.get_consensus(height)
        assert vset is not None, f"validator set of height {height} is unknown"
        return vset

    def _get_base_height(self) -> int:
        """The highest height decided and committed or executing: the next one to decide is one above."""
        return max(self.get_tip_height(), self.applying or 0)

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
        """Wait for a block still executing (its one LMDB write finishes or never starts), then close the WAL."""
        self._exec_pool.shutdown(wait=True, cancel_futures=True)
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

    def _is_idle(self) -> bool:
        """No height running, none executing, none waiting for its block or its commit signatures."""
        return (not self.started and self.awaiting_block is None and self.applying is None
                and self.pending_decision is None)

    async def _pacer(self) -> None:
        interval = self.node.genesis.params.block_interval_ms / 1000
        while not self._stopping:
            if self._is_idle():
                wait = self.last_commit_at + interval - time.monotonic()
                if wait <= 0 and self.is_height_due():
                    self._start_height(self.get_tip_height() + 1)
                    continue
                self.tx_arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.tx_arrived.wait(), max(wait, 0.02) if wait > 0 else 0.05)
                continue
            await asyncio.sleep(0.02)

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
        assert height == self.get_tip_height() + 1, "a height starts only on top of the committed tip"
        self.wal.reset(height)
        self._clear_height()
        self.started = True
        self._execute(self.core.start_height(height, self._get_vset(height)), replay=False)
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
        self._parts_per_round = {k: v for k, v in self._parts_per_round.items() if k[0] > tip}
        self.own = []
        self._signed = {}
        self._fed_own = set()
        self.sigs = {k: v for k, v in self.sigs.items() if k[1] > tip}
        self._slot_values = {k: v for k, v in self._slot_values.items() if k[0] > tip}
        self._far = {k: v for k, v in self._far.items() if k[0] > tip}
        self.held = {h: v for h, v in self.held.items() if h > tip}
        # Peers that already started the next height sent messages for it while we finished this one.
        self.peer_activity = bool(self.future.get(tip + 1))
        if self.pending_decision is not None and self.pending_decision[0] <= tip:
            self.pending_decision = None
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
        parsed: list[tuple[list[Any], Any]] = []
        for rec in records[1:]:
            try:
                parsed.append((rec, self._parse_record(rec)))
            except (CodecError, KeyError, ValueError, IndexError, TypeError) as exc:
                log.warning("WAL record unreadable (%s); replay stops there", exc)
                break
        for rec, item in parsed:  # own signed messages: re-sent as they were, never signed anew
            if rec[0] == "s" or (rec[0] == "v" and item.validator == self.address):
                self._signed[self._own_key(item)] = item
        self.started = True
        outs = self.core.start_height(tip + 1, self._get_vset(tip + 1))
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
        for rec, item in parsed:
            if rec[0] == "s":
                continue
            inp = self._input_from_record(rec, item)
            if isinstance(inp, ProposalValueReady):
                pending_request = None
            elif isinstance(inp, ValidityAnswer):
                pending_validate.pop(inp.value_id, None)
            absorb(self.core.process(inp))
        if pending_request is not None and self.started:
            self._execute([pending_request], replay=False)
        if pending_validate and self.started:
            self._execute(list(pending_validate.values()), replay=False)

    def _parse_record(self, rec: list[Any]) -> Any:
        """Decode a WAL record without side effects (a record that does not decode ends the replay)."""
        kind = rec[0]
        if kind == "s":
            if rec[1] != "p":
                raise ValueError(f"unknown signed-message kind {rec[1]!r}")
            return ProposalMsg.decode(rec[2])
        if kind == "p":
            return ProposalMsg.decode(rec[1])
        if kind == "v":
            return SignedVote.decode(rec[1])
        if kind == "t":
            return TimeoutElapsed(TimeoutKind(rec[1]), int(rec[2]), int(rec[3]))
        if kind == "r":
            return ProposalValueReady(rec[1], rec[2], Block.decode(rec[3]).header.encode()), Block.decode(rec[3])
        if kind == "a":
            return ValidityAnswer(rec[1], bool(rec[2])), (Block.decode(rec[3]) if rec[2] and rec[3] else None)
        raise ValueError(f"unknown WAL record kind {kind!r}")

    def _input_from_record(self, rec: list[Any], item: Any) -> Any:
        """The core input a parsed record stands for, restoring what the shell kept beside it."""
        kind = rec[0]
        if kind == "p":
            self._note_proposal(item, None)
            return ProposalReceived(self._to_proposal(item))
        if kind == "v":
            own = item.validator == self.address
            self._note_vote(item, own=own)
            if own:
                self._fed_own.add(self._own_key(item))
            return self._to_input_vote(item)
        if kind == "t":
            return item
        if kind == "r":
            inp, block = item
            self.blocks[self.suite.hash(block.header.encode())] = block
            return inp
        inp, block = item
        if block is not None:
            self.blocks[inp.value_id] = block
        return inp

    # ------------------------------------------------------------------------------------------ core IO

    def _feed(self, inp: Any, record: list[Any]) -> None:
        """Log an input, give it to the core, carry out what it asks."""
        self.wal.append(record)
        self._execute(self.core.process(inp), replay=False)

    def _execute(self, outs: list[Output], replay: bool) -> None:
        for o in outs:
            if isinstance(o, Broadcast):
                self._on_broadcast(o.message, replay)
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

    def _on_broadcast(self, message: Proposal | Vote, replay: bool) -> None:
        """Sign an own proposal or vote and send it, in the order of durability (docs/spec/consensus.md):

        1. the WAL — every input that led the core here — is synced;
        2. the signer guard accepts the message and its new state is synced to ``signer/state``;
        3. the message is signed and appended to the WAL (a vote as an input record), which is synced;
        4. it is sent;
        5. a vote is fed back to the core, which counts it only now (``count_own_votes=False``).

        A message signed before a restart (found in the replayed WAL) is re-sent exactly as it was, never signed
        anew. A message the guard refuses is neither sent nor counted: the core then holds no vote of ours that
        does not exist, so no decision (and no stored commit) can rest on it."""
        key = self._own_key(message)
        earlier = self._signed.get(key)
        if earlier is not None:
            if earlier not in self.own:
                self.own.append(earlier)
            if not replay and self.transport is not None:
                self.transport.broadcast(earlier)
            if isinstance(earlier, SignedVote) and not replay and key not in self._fed_own:
                self._fed_own.add(key)
                self._execute(self.core.process(self._to_input_vote(earlier)), replay)
            return
        if self.wal.is_dirty:
            self.wal.sync()  # (1)
        try:
            new_state = check_sign(self.signer, message)
        except SignRefused as exc:
            log.error("signer guard: %s", exc)
            self.sign_refusals += 1
            return
        if new_state != self.signer:
            self._save_signer_state(new_state)  # (2)
            self.signer = new_state
        wire = self._sign(message)
        if wire is None:
            return
        if isinstance(wire, ProposalMsg):
            self.wal.append(["s", "p", wire.encode()])
        else:
            self.wal.append(["v", wire.encode()])
            self._note_vote(wire, own=True)
        self.wal.sync()  # (3)
        self._signed[key] = wire
        self.own.append(wire)
        if not replay and self.transport is not None:
            self.transport.broadcast(wire)  # (4)
        if isinstance(wire, SignedVote):
            self._fed_own.add(key)
            self._execute(self.core.process(self._to_input_vote(wire)), replay)  # (5)

    def _save_signer_state(self, state: SignerState) -> None:
        """Persist the guard's state (atomic replace, synced); a seam for the crash-point tests."""
        save_signer_state(self.signer_path, state)

    def _sign(self, message: Proposal | Vote) -> ProposalMsg | SignedVote | None:
        """Sign a message the guard has accepted (its state already synced)."""
        key = self.node.key
        if isinstance(message, Proposal):
            block = self.blocks.get(message.value_id)
            if block is None:
                log.error("no block for own proposal %s", message.value_id.hex()[:16])
                return None
            vr = message.valid_round + 1
            sig = self.suite.sign(key.private_key, compute_proposal_sign_bytes(
                self.chain_id, message.height, message.round, message.value_id, vr))
            hashes = tuple(compute_tx_hash(self.suite, tx.body) for tx in block.txs)
            return ProposalMsg(message.round, vr, block.header, hashes, block.last_commit, message.proposer, sig)
        kind = PREVOTE if message.type == VoteType.PREVOTE else PRECOMMIT
        bid = message.value_id or b""
        sig = self.suite.sign(key.private_key, compute_vote_sign_bytes(
            self.chain_id, kind, message.height, message.round, bid))
        return SignedVote(kind, message.height, message.round, bid, message.validator, sig)

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
            hashes = list(parts.msg.tx_hashes) if parts else []
            if block is not None:
                # Signatures not yet checked (still in a gossip batch, or fetched) are checked off the event
                # loop, each once; check_block then finds every verdict of *these* signatures cached.
                verdicts = await self.node.process_verify_many(list(zip(block.txs, hashes, strict=True)))
                if not all(verdicts.values()):
                    block = None
                    log.warning("proposal %s at height %d carries a transaction with a bad signature",
                                o.value_id.hex()[:16], o.height)
            if block is not None:
                try:
                    tip = self.node.get_tip()
                    if block.header.height != tip.height + 1:
                        raise BlockInvalid("proposal is not for the next height")
                    check_block_limits(self.params, block.header.height, len(block.txs), len(block.encode()))
                    on_chain = self.node.store.get_committed(hashes)
                    check_block(self.node.rules, self.node.get_parent_info(tip), block, hashes,
                                on_chain.__contains__, self.node.get_sig_checked(block.txs, hashes))
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
        """The proposal's block from our mempool and what we fetch: asked of the peer that sent the proposal
        first (the proposer, or a peer that relayed it), then of every peer every FETCH_RETRY_S."""
        msg = parts.msg
        start = time.monotonic()
        deadline = start + FETCH_TIMEOUT_S
        next_ask = start
        asks = 0
        while True:
            txs: list[Transaction] = []
            missing: list[bytes] = []
            for h in msg.tx_hashes:
                e = self.node.mempool.get(h)
                if e is not None:
                    txs.append(e.tx)
                elif h in self.fetched:
                    txs.append(self.fetched[h][0])
                elif (vt := self.node.get_verifying_tx(h)) is not None:
                    txs.append(vt)
                else:
                    missing.append(h)
            if not missing:
                return Block(msg.header, tuple(txs), msg.last_commit)
            now = time.monotonic()
            if now >= deadline or self.transport is None:
                log.warning("proposal at height %d: %d transactions could not be fetched", msg.header.height,
                            len(missing))
                return None
            if now >= next_ask:
                req = GetTxs(tuple(missing[:MAX_HASHES]))
                if asks > 0 or parts.sender is None or not self.transport.send(parts.sender, req):
                    self.transport.broadcast(req)
                asks += 1
                next_ask = now + FETCH_RETRY_S
            self.tx_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.tx_arrived.wait(), 0.05)

    def _on_decide(self, d: Decide) -> None:
        """The core decided (L49). Store the block only with a commit that passes check_commit — the same check
        a light client and block sync apply — then execute it off the event loop."""
        block_id = self.suite.hash(d.value)
        block = self.blocks.get(block_id)
        self.started = False
        if block is None:
            log.warning("decided height %d without its transactions; fetching it from peers", d.height)
            self.awaiting_block = d.height
            self._request_sync(force=True)
            return
        commit = self._make_commit(d.height, d.round, block_id)
        if commit is None:
            self.pending_decision = (d.height, d.round, block_id)
            self._request_sync(force=True)
            return
        self._commit_decided(block, commit)

    def _make_commit(self, height: int, round_: int, block_id: bytes) -> Commit | None:
        """The commit of a decision from the verified precommit signatures held, if they pass check_commit."""
        sigs = sorted((k[4], s) for k, s in self.sigs.items()
                      if k[0] == PRECOMMIT and k[1] == height and k[2] == round_ and k[3] == block_id)
        commit = Commit(height, round_, block_id, tuple(CommitSig(v, s) for v, s in sigs))
        try:
            check_commit(self.suite, self.chain_id, self._get_validators(height), commit, block_id, height)
        except BlockInvalid as exc:
            log.warning("decided height %d but its commit does not pass yet (%s); waiting for precommits or sync",
                        height, exc)
            return None
        return commit

    def _get_validators(self, height: int) -> ValidatorSet:
        """The validator set that signs block ``height`` (tip + 1 here: always known)."""
        vset = self.valsets.get(height)
        if vset is None:
            raise BlockInvalid(f"the validator set of height {height} is not known yet")
        return vset

    def _retry_decision(self) -> None:
        if self.pending_decision is None:
            return
        height, round_, block_id = self.pending_decision
        block = self.blocks.get(block_id)
        if block is None or height != self.get_tip_height() + 1:
            return
        commit = self._make_commit(height, round_, block_id)
        if commit is not None:
            self.pending_decision = None
            self._commit_decided(block, commit)

    def _commit_decided(self, block: Block, commit: Commit) -> None:
        tip = self.node.get_tip()
        if (block.header.state_root, block.header.receipts_root) != (tip.state_root, tip.receipts_root):
            self._on_divergence(f"block {block.header.height} decided by the network carries state root "
                                f"{block.header.state_root.hex()[:16]}…, this node has {tip.state_root.hex()[:16]}…")
            return
        hashes = [compute_tx_hash(self.suite, tx.body) for tx in block.txs]
        self.applying = block.header.height
        self._spawn(self._finish_commit(block, commit, hashes))

    async def _finish_commit(self, block: Block, commit: Commit, hashes: list[bytes]) -> None:
        """Execute and store a decided block on the execution thread; votes, timers, P2P and the API keep running
        meanwhile. The next height starts only after (its header carries this block's state root)."""
        try:
            await self._apply(block, commit, hashes)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an execution or store failure halts the node loudly, never silently
            log.exception("committing block %d failed", block.header.height)
            self._on_divergence(f"committing block {block.header.height} failed: {exc}")
            return
        finally:
            self.applying = None
        for h in hashes:
            self.fetched.pop(h, None)
        self.last_commit_at = time.monotonic()
        self._clear_height()
        self.tx_arrived.set()

    async def _apply(self, block: Block, commit: Commit, hashes: list[bytes]) -> bool:
        async with self._apply_lock:
            return await self._apply_locked(block, commit, hashes)

    async def _apply_locked(self, block: Block, commit: Commit, hashes: list[bytes]) -> bool:
        """Execute and store one block on the execution thread (caller holds the apply lock); False if the tip has
        moved past it meanwhile (block sync got there first)."""
        if block.header.height != self.get_tip_height() + 1:
            return False
        loop = asyncio.get_running_loop()
        receipts = await loop.run_in_executor(self._exec_pool, self.node.process_execute_and_store, block,
                                              commit, hashes)
        self.node.on_block_stored(block, commit, hashes, receipts)
        return True

    # ------------------------------------------------------------------------------------------ peer messages

    def on_peer_up(self, peer: Peer) -> None:
        """A peer (re)connected: tell it where we are and re-send what we hold of this height — our own messages
        and the other validators' (it may have missed them while it was down or cut off)."""
        assert self.transport is not None
        addr = peer.spec.address
        self.transport.send(addr, Status(self.get_tip_height(), max(self.core.round, 0)))
        for m in self.own:
            self.transport.send(addr, m)
        for m in self.held.get(self.get_tip_height() + 1, [])[-MAX_ANTI_ENTROPY_BATCH:]:
            self.transport.send(addr, m)
        if peer.height > self.get_tip_height():
            self._request_sync()

    async def on_message(self, peer: Peer, msg: Any) -> None:
        """Handle one authenticated peer message. Raises PeerViolation for provably bad input."""
        if isinstance(msg, SignedVote):
            self._on_vote(msg, peer.spec.address)
        elif isinstance(msg, ProposalMsg):
            self._on_proposal(msg, peer.spec.address)
        elif isinstance(msg, TxBatch):
            await self._on_txs(msg)
        elif isinstance(msg, GetTxs):
            self._on_get_txs(peer, msg)
        elif isinstance(msg, Status):
            peer.height = msg.height
            if msg.height > self._get_base_height():
                self._request_sync()
        elif isinstance(msg, GetBlocks):
            self._on_get_blocks(peer, msg)
        elif isinstance(msg, Blocks):
            await self._on_blocks(msg)
        elif isinstance(msg, Hello):
            raise PeerViolation("second Hello on a connection")

    def _is_relevant(self, height: int) -> bool:
        """Whether a consensus message for `height` is kept: heights tip + 1 … tip + FUTURE_HEIGHT_WINDOW. A
        message from further ahead only tells us we are behind."""
        tip = self.get_tip_height()
        if height > self._get_base_height() + 1:
            self._request_sync()
        return tip < height <= tip + FUTURE_HEIGHT_WINDOW

    def _get_round_limit(self, height: int) -> int:
        """Highest round whose messages are stored and relayed (ROUND_WINDOW above the current round)."""
        if height == self.core.height and self.core.round >= 0:
            return self.core.round + ROUND_WINDOW
        return ROUND_WINDOW

    def _can_feed(self, height: int) -> bool:
        """The core is at `height` and takes messages for it (running, or decided and collecting precommits)."""
        return self.core.height == height and (self.started or self.core.step == Step.DECIDED)

    def _is_far_round_taken(self, height: int, validator: bytes, round_: int) -> bool:
        """A message beyond the round window counts (for L55) only if it raises the sender's highest round, at
        most MAX_FAR_ROUND_MESSAGES times per validator and height, and only at the height being decided."""
        if not self._can_feed(height):
            return False
        top, n = self._far.get((height, validator), (-1, 0))
        if round_ <= top or n >= MAX_FAR_ROUND_MESSAGES:
            return False
        self._far[(height, validator)] = (round_, n + 1)
        return True

    def _deliver(self, height: int, inp: Any, record: list[Any]) -> None:
        """Feed a verified message to the core now, or keep it until its height starts (bounded by the caller)."""
        if self._can_feed(height):
            self._feed(inp, record)
            return
        if height == self.get_tip_height() + 1:
            self.peer_activity = True
        self.future.setdefault(height, []).append((inp, record))
        self.future_count += 1

    def _has_room(self, height: int) -> bool:
        return self._can_feed(height) or self.future_count < MAX_FUTURE_MESSAGES

    def _hold(self, height: int, msg: ProposalMsg | SignedVote) -> None:
        held = self.held.setdefault(height, [])
        if len(held) < MAX_HELD_PER_HEIGHT:
            held.append(msg)

    def _relay(self, msg: ProposalMsg | SignedVote, sender: bytes | None, signer: bytes) -> None:
        """Pass a newly accepted message on once (it is deduplicated on arrival) to the peers that may not have it:
        all but the one it came from and its signer. A cut link then costs one hop, not liveness."""
        if self.transport is not None:
            self.transport.broadcast(msg, exclude={a for a in (sender, signer) if a is not None})
            self.relayed += 1

    def _note_vote(self, sv: SignedVote, own: bool) -> None:
        """Remember a verified vote: its signature (commits, dedup), its slot count, and (others') for re-sending."""
        self.sigs[(sv.kind, sv.height, sv.round, sv.block_id, sv.validator)] = sv.signature
        slot = (sv.height, sv.round, sv.kind, sv.validator)
        self._slot_values[slot] = self._slot_values.get(slot, 0) + 1
        if not own:
            self._hold(sv.height, sv)

    def _note_proposal(self, msg: ProposalMsg, sender: bytes | None) -> None:
        value_id = self.suite.hash(msg.header.encode())
        self.parts[value_id] = _Parts(msg, sender)
        key = (msg.header.height, msg.round)
        self._parts_per_round[key] = self._parts_per_round.get(key, 0) + 1
        if msg.proposer != self.address:
            self._hold(msg.header.height, msg)

    def _on_vote(self, sv: SignedVote, sender: bytes | None = None) -> None:
        if sv.kind not in (PREVOTE, PRECOMMIT):
            raise PeerViolation(f"vote of unknown kind {sv.kind}")
        key = (sv.kind, sv.height, sv.round, sv.block_id, sv.validator)
        if key in self.sigs or not self._is_relevant(sv.height):
            return
        if not self.valsets.is_known(sv.height):
            return  # beyond tip + 2: cannot be checked yet; anti-entropy re-sends it when it matters
        pub = self.valsets.get_public_key(sv.height, sv.validator)
        if pub is None:
            raise PeerViolation(f"vote by {sv.validator.hex()}, not a validator of height {sv.height}")
        far = sv.round > self._get_round_limit(sv.height)
        if not far and (self._slot_values.get((sv.height, sv.round, sv.kind, sv.validator), 0) >= MAX_VALUES_PER_SLOT
                        or not self._has_room(sv.height)):
            return
        if not self.suite.verify(pub, compute_vote_sign_bytes(self.chain_id, sv.kind, sv.height, sv.round,
                                                              sv.block_id), sv.signature):
            raise PeerViolation("vote signature does not verify")
        record = ["v", sv.encode()]
        if far:
            if self._is_far_round_taken(sv.height, sv.validator, sv.round):
                self._feed(self._to_input_vote(sv), record)
            return
        self._note_vote(sv, own=sv.validator == self.address)
        self._relay(sv, sender, sv.validator)
        self._deliver(sv.height, self._to_input_vote(sv), record)
        if self.pending_decision is not None and sv.kind == PRECOMMIT:
            self._retry_decision()

    def _to_input_vote(self, sv: SignedVote) -> PrevoteReceived | PrecommitReceived:
        vtype = VoteType.PREVOTE if sv.kind == PREVOTE else VoteType.PRECOMMIT
        v = Vote(vtype, sv.height, sv.round, sv.block_id or None, sv.validator)
        return PrevoteReceived(v) if vtype == VoteType.PREVOTE else PrecommitReceived(v)

    def _to_proposal(self, msg: ProposalMsg) -> Proposal:
        value = msg.header.encode()
        return Proposal(msg.header.height, msg.round, value, self.suite.hash(value), msg.valid_round - 1,
                        msg.proposer)

    def _on_proposal(self, msg: ProposalMsg, sender: bytes | None) -> None:
        """A proposal: from this round's proposer only, within the windows, its unsigned parts (transaction
        hashes, parent commit) bound to the signed header, and a block small enough — checked before anything is
        kept, relayed or fetched."""
        h = msg.header
        if not self._is_relevant(h.height):
            return
        p = self._to_proposal(msg)
        if p.value_id in self.parts and self.parts[p.value_id].msg.round == msg.round:
            return
        vset = self.valsets.get_consensus(h.height)
        if vset is None or msg.proposer != vset.get_proposer(h.height, msg.round):
            return  # set not known yet, or not this round's proposer: the core would ignore it; never stored
        pub = self.valsets.get_public_key(h.height, msg.proposer)
        if pub is None:
            raise PeerViolation(f"proposal by {msg.proposer.hex()}, not a validator")
        far = msg.round > self._get_round_limit(h.height)
        if not far and (self._parts_per_round.get((h.height, msg.round), 0) >= MAX_PROPOSALS_PER_ROUND
                        or not self._has_room(h.height)):
            return
        try:
            check_block_limits(self.params, h.height, h.tx_count, None)
        except BlockInvalid as exc:
            log.warning("proposal by %s dropped: %s", msg.proposer.hex()[:16], exc)
            return
        if not self.suite.verify(pub, compute_proposal_sign_bytes(self.chain_id, h.height, msg.round, p.value_id,
                                                                  msg.valid_round), msg.signature):
            raise PeerViolation("proposal signature does not verify")
        if len(msg.tx_hashes) != h.tx_count or compute_txs_root(self.suite, msg.tx_hashes) != h.txs_root:
            raise PeerViolation("proposal lists transactions its header does not commit to")
        if compute_commit_hash(self.suite, msg.last_commit) != h.last_commit_hash:
            raise PeerViolation("proposal carries a parent commit its header does not commit to")
        record = ["p", msg.encode()]
        if far:
            if self._is_far_round_taken(h.height, msg.proposer, msg.round):
                self.parts[p.value_id] = _Parts(msg, sender)
                self._feed(ProposalReceived(p), record)
            return
        self._note_proposal(msg, sender)
        self._relay(msg, sender, msg.proposer)
        self._deliver(h.height, ProposalReceived(p), record)

    async def _on_txs(self, batch: TxBatch) -> None:
        """Transactions relayed by a peer (gossip, or answers to GetTxs): admitted like a client's, signatures
        verified on the verifier threads. Valid ones the mempool cannot take (full, or already past a rule that
        depends on our height) are kept aside for assembling the proposal that needs them."""
        height = self.get_tip_height()
        res = await self.node.process_submit_batch(list(batch.txs), from_client=False)
        for raw, (th, status, message) in zip(batch.txs, res.results, strict=True):
            if status in ("malformed", "bad_signature"):
                raise PeerViolation(f"peer relayed a transaction that is {status}: {message}")
            if status not in ("accepted", "known", "committed") and th and th not in self.fetched \
                    and len(self.fetched) < MAX_FETCHED_TXS:
                tx = Transaction.decode(raw)
                if self.node.is_sig_verified(tx, th):
                    self.fetched[th] = (tx, height)
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
            if any(p.height > self._get_base_height() for p in self.transport.peers.values()):
                self._request_sync()
            self._anti_entropy()
            await asyncio.sleep(STATUS_INTERVAL_S)

    def _anti_entropy(self) -> None:
        """Stuck on a height for ANTI_ENTROPY_S: re-send our own messages of it to every peer and the others'
        we hold to one peer in turn. Frames lost to a crash or a cut link (a killed node's unsent precommit, a
        proposal only the dead proposer had sent) reach every live node again, so no two correct nodes stay in
        different rounds for want of one message (the simulator's anti-entropy rule)."""
        assert self.transport is not None
        if not self.started or time.monotonic() - self.last_commit_at < ANTI_ENTROPY_S:
            return
        for m in self.own[-MAX_ANTI_ENTROPY_BATCH:]:
            self.transport.broadcast(m)
        peers = sorted(self.transport.peers)
        held = self.held.get(self.core.height, [])
        if peers and held:
            target = peers[self._ae_turn % len(peers)]
            self._ae_turn += 1
            for m in held[-MAX_ANTI_ENTROPY_BATCH:]:
                self.transport.send(target, m)

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

    async def _on_blocks(self, msg: Blocks) -> None:
        """Verify and apply synced blocks in order (one at a time on the execution thread); a bad one is the
        sender's fault."""
        self.sync_pending_since = None
        applied = 0
        async with self._apply_lock:
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
                    check_commit(self.suite, self.chain_id, self._get_validators(block.header.height), commit,
                                 block_id, block.header.height)
                except BlockInvalid as exc:
                    raise PeerViolation(f"synced block {block.header.height} has no valid commit: {exc}") from None
                if block.header.prev_block_id != tip.block_id:
                    # Signed by > 2/3 of the power yet not on our chain: we hold a block the network never decided.
                    self._on_divergence(f"block {block.header.height} signed by the validators does not extend "
                                        f"this node's block {tip.height}")
                    return
                # Signatures on the verifier threads, not the event loop (an SM2 block of 5,000 takes seconds).
                await self.node.process_verify_many(list(zip(block.txs, hashes, strict=True)))
                try:
                    check_block_limits(self.params, block.header.height, len(block.txs), len(item.block))
                    check_block(self.node.rules, self.node.get_parent_info(tip), block, hashes,
                                self.node.store.get_committed(hashes).__contains__,
                                self.node.get_sig_checked(block.txs, hashes))
                except BlockInvalid as exc:
                    if block.header.state_root != tip.state_root or block.header.receipts_root != tip.receipts_root:
                        self._on_divergence(f"synced block {block.header.height}: {exc}")
                        return
                    raise PeerViolation(f"synced block {block.header.height} is invalid: {exc}") from None
                if await self._apply_locked(block, commit, hashes):
                    applied += 1
        if applied:
            self.blocks_synced += applied
            tip_h = self.get_tip_height()
            log.info("synced %d blocks; now at height %d", applied, tip_h)
            if self.awaiting_block is not None and tip_h >= self.awaiting_block:
                self.awaiting_block = None
            if self.core.height <= tip_h and self.applying is None:
                # Whatever round we were in is history; the next height starts from the pacer.
                self.started = False
                self.last_commit_at = 0.0
                self._clear_height()
            self._request_sync()
