"""The consensus reactor: the pure Tendermint core (:mod:`qilian.consensus`) plus the write-ahead log, the signer
guard, proposal and vote intake, relay, anti-entropy, block building and validation, and the decide-then-commit
path — written against ports (:mod:`qilian.shell.ports`), so the node and the simulator run this very code.

What the core decides on is the block *header* (its bytes are the value, its hash the block ID). A proposal carries
the header and the transactions' signed hashes (``txs_root`` commits to them); a node assembles the block from its
mempool and fetches the signed versions it lacks (the mempool reactor) — so every node stores the proposer's exact
bytes — then answers the core's validity question with the full block checks. Votes and
proposals are signature-checked here, before they reach the core.

Order of durability (docs/spec/consensus.md): every core input is appended to the WAL; before the signer guard's
state is saved the WAL is synced; the signed message is appended and synced before it leaves; an own vote is counted
by the core only after that. After a crash the WAL replays into a fresh core, which — being deterministic —
re-derives the same messages; the signer guard lets exactly those be re-signed. A decision is stored only with a
commit that passes ``check_commit``; the block executes through the ledger port (a worker thread in the node) and
the next height starts once its state root is known.

Peers' proposals and votes are bounded before they are kept (:mod:`qilian.shell.limits`: height and round windows,
per-slot and per-round counts, this round's proposer only), relayed once to the other peers, and re-sent to a peer
that (re)connects and by anti-entropy while a height is stuck."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from qilian.consensus.core import Core
from qilian.consensus.signer import SignerState, SignRefused, check_sign
from qilian.consensus.timeouts import TimeoutConfig
from qilian.consensus.types import (
    Broadcast,
    Decide,
    EvidenceFound,
    Input,
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
    ValidateValue,
    ValidityAnswer,
    Vote,
    VoteType,
)
from qilian.consensus.validators import ValidatorSet as ConsensusValidators
from qilian.execution.block import (
    BlockInvalid,
    ParentInfo,
    check_block,
    check_commit,
    compute_txs_root,
    make_header,
)
from qilian.execution.evidence import (
    MAX_BLOCK_EVIDENCE,
    MAX_EVIDENCE_AGE_BLOCKS,
    EvidenceInvalid,
    check_evidence,
    check_evidence_shape,
    compute_evidence_root,
    is_evidence_due,
    make_evidence,
)
from qilian.execution.limits import check_block_limits
from qilian.execution.params import MAX_BLOCK_BYTES_BOUND
from qilian.execution.rules import TxRejected, check_tx_window
from qilian.mempool.pool import PoolEntry
from qilian.p2p.messages import (
    MAX_EVIDENCE_PER_MESSAGE,
    EvidenceMsg,
    PeerViolation,
    ProposalMsg,
    compute_proposal_sign_bytes,
)
from qilian.shell.limits import (
    FUTURE_HEIGHT_WINDOW,
    MAX_ANTI_ENTROPY_BATCH,
    MAX_FAR_ROUND_MESSAGES,
    MAX_FUTURE_MESSAGES,
    MAX_HELD_PER_HEIGHT,
    MAX_PENDING_EVIDENCE,
    MAX_PROPOSALS_PER_ROUND,
    MAX_VALUES_PER_SLOT,
    ROUND_WINDOW,
)
from qilian.shell.ports import Clock, Ledger, Network, Signer, SignerStore, TimerHandle, TxPool, WalFile
from qilian.shell.timing import ShellTiming
from qilian.shell.wal import (
    WalHeight,
    WalOwnProposal,
    WalProposal,
    WalRecord,
    WalTimeout,
    WalValidity,
    WalValue,
    WalVote,
)
from qilian.types.core import (
    MAX_BLOCK_TXS_BOUND,
    PRECOMMIT,
    PREVOTE,
    Block,
    ChainParams,
    Commit,
    CommitSig,
    Evidence,
    Transaction,
    compute_commit_hash,
    compute_evidence_hash,
    compute_signed_tx_hash,
    compute_tx_hash,
    compute_vote_sign_bytes,
)
from qilian.types.core import Vote as SignedVote

if TYPE_CHECKING:
    from qilian.shell.apply import Applier

log = logging.getLogger("qilian.consensus")

MAX_VOTE_TIMINGS = 4096
"""(height, round, type) vote timings tracked at once (rounds beyond it are not timed)."""
MAX_QUORUM_DELAYS = 4096
"""Most recent first-vote-to-quorum delays kept for ``/metrics``."""


class ShellObserver(Protocol):
    """What the simulator's checkers watch inside the shell (the node passes none). Observation only: an observer
    never changes what the shell does."""

    def on_core_step(self, core: Core, outputs: list[Output], lock_before: tuple[int, bytes | None]) -> None:
        """The core consumed one input (or started a height) and asked for ``outputs``."""

    def on_signed(self, wire: ProposalMsg | SignedVote) -> None:
        """The shell signed a message (the guard allowed it and its state is durable)."""

    def on_guard_refused(self, message: Proposal | Vote, reason: str) -> None:
        """The signer guard refused a message the core asked to sign."""


class BlockSource(Protocol):
    """What consensus needs from the mempool reactor: assemble a proposed block (fetching what is missing)."""

    def assemble(self, msg: ProposalMsg, sender: bytes | None, done: Callable[[Block | None], None]) -> None:
        """``done(block)`` with the proposal's block, or ``done(None)`` if its transactions cannot be had in time."""


class SyncControl(Protocol):
    """What consensus needs from the block-sync reactor."""

    def request_sync(self, force: bool = False) -> None:
        """Ask the most advanced peer for the blocks after our tip."""


class StateDiverged(RuntimeError):
    """This node computed a different state or receipts root than the blocks > 2/3 of the power signed."""


@dataclass(frozen=True, slots=True)
class Parts:
    """What arrived with a proposal: enough to assemble its block."""

    msg: ProposalMsg
    """The signed proposal."""
    sender: bytes | None
    """The peer it came from (asked first for missing transactions)."""


def compute_own_key(m: ProposalMsg | SignedVote | Proposal | Vote) -> tuple[int, int, int]:
    """(height, round, step) of an own message: at most one signed message each."""
    if isinstance(m, ProposalMsg):
        return (m.header.height, m.round, 0)
    if isinstance(m, Proposal):
        return (m.height, m.round, 0)
    if isinstance(m, SignedVote):
        return (m.height, m.round, m.kind)
    return (m.height, m.round, PREVOTE if m.type == VoteType.PREVOTE else PRECOMMIT)


class ConsensusReactor:
    """One node's consensus: the core plus the WAL, the guard and the message discipline around it."""

    def __init__(self, *, ledger: Ledger, pool: TxPool, network: Network | None, clock: Clock, wal: WalFile,
                 signer_store: SignerStore, signer: Signer, timeouts: TimeoutConfig, applier: Applier,
                 timing: ShellTiming = ShellTiming(), on_fatal: Callable[[str], None] | None = None,
                 observer: ShellObserver | None = None):
        self.ledger = ledger
        self.pool = pool
        self.network = network
        self.clock = clock
        self.wal = wal
        self.signer_store = signer_store
        self.signer = signer
        self.applier = applier
        self.timing = timing
        self.observer = observer
        self._on_fatal = on_fatal
        rules = ledger.rules
        self.rules = rules
        self.suite = rules.suite
        self.chain_id = rules.chain_id
        self.params = rules.genesis.params
        self.address = signer.address
        # The core counts our own votes only once we have signed them (see _on_broadcast). Its validator set is
        # that of each height it runs (get_vset): this node may be an observer of some heights and a validator
        # of others.
        self.core = Core(self.address, self.get_vset(self.get_tip_height() + 1), timeouts, id_of=self.suite.hash,
                         count_own_votes=False, max_future_rounds=ROUND_WINDOW)
        self.guard: SignerState = signer_store.load()
        self.blocks_source: BlockSource | None = None
        self.sync: SyncControl | None = None
        self.on_stored: Callable[[list[bytes]], None] | None = None
        """Told the hashes of each block this reactor committed (the mempool reactor forgets fetched ones)."""
        self.sign_refusals = 0
        """Signatures the guard refused (0 on a correct node; exposed for tests and the simulator)."""
        self.started = False
        """Whether consensus runs for tip + 1 (otherwise it waits for a reason to make a block)."""
        self.blocks: dict[bytes, Block] = {}
        """Assembled blocks of this height by block ID (own proposals and validated ones)."""
        self.parts: dict[bytes, Parts] = {}
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
        self.last_commit_at = -(1 << 62)
        """Monotonic ms of the last commit (far in the past before the first)."""
        self.peer_activity = False
        """A peer sent a message for tip + 1: start even without transactions of our own."""
        self.awaiting_block: int | None = None
        """A height decided without our having its transactions: fetched by sync."""
        self.pending_decision: tuple[int, int, bytes] | None = None
        """(height, round, block ID) decided whose precommit signatures do not yet pass check_commit: completed by
        further precommits or replaced by block sync; nothing is stored until then."""
        self.applying: int | None = None
        """Height whose block is executing (the next height waits for its state root)."""
        self.evidence: dict[bytes, Evidence] = {}
        """Verified evidence waiting for a block, by hash, oldest first (≤ MAX_PENDING_EVIDENCE): detected here or
        gossiped by peers; a proposer includes the due ones, and they leave once committed."""
        self.future: dict[int, list[tuple[Input, WalRecord]]] = {}
        """Verified proposals and votes for heights not started yet."""
        self.future_count = 0
        self.relayed = 0
        """Consensus messages of other validators relayed to peers."""
        self._vote_timing: dict[tuple[int, int, int], list[int]] = {}
        """(height, round, type) → [monotonic ms of its first vote seen, power seen so far, 1 once a quorum]."""
        self.quorum_delays: deque[tuple[int, int]] = deque(maxlen=MAX_QUORUM_DELAYS)
        """(vote type, ms) from the first vote of a (height, round, type) to a quorum of that type: how long the
        validators take to vote once one has. Observation only (``/metrics``, ``qilian bench votes``)."""
        self._ae_turn = 0
        self._timers: dict[object, TimerHandle] = {}
        self._pace_timer: TimerHandle | None = None
        self._ae_timer: TimerHandle | None = None
        self._stopping = False

    # ------------------------------------------------------------------------------------------ lifecycle

    def get_tip_height(self) -> int:
        return self.ledger.get_parent_info().height

    def get_base_height(self) -> int:
        """The highest height decided and committed or executing: the next one to decide is one above."""
        return max(self.get_tip_height(), self.applying or 0)

    def get_round(self) -> int:
        return self.core.round

    def get_vset(self, height: int) -> ConsensusValidators:
        """The core's validator set of a height the node is about to run: tip + 1, whose set is ``current`` in
        the tip's state and so always known. A node whose key is not in it is an observer of that height."""
        vset = self.ledger.get_consensus_validators(height)
        assert vset is not None, f"validator set of height {height} is unknown"
        return vset

    def start(self) -> None:
        """Replay the WAL (before any peer hears from us), then pace heights and watch for a stuck height."""
        self._replay()
        self._schedule_pace(0)
        if self.network is not None:
            self._ae_timer = self.clock.call_later(self.timing.status_interval_ms, self._on_anti_entropy_timer)

    def _on_anti_entropy_timer(self) -> None:
        if self._stopping:
            return
        self.process_anti_entropy()
        self._ae_timer = self.clock.call_later(self.timing.status_interval_ms, self._on_anti_entropy_timer)

    def stop(self) -> None:
        self._stopping = True
        for t in self._timers.values():
            t.cancel()
        self._timers = {}
        if self._pace_timer is not None:
            self._pace_timer.cancel()
        if self._ae_timer is not None:
            self._ae_timer.cancel()

    def _fatal(self, reason: str) -> None:
        """Our state differs from what > 2/3 of the power decided: stop loudly rather than serve wrong answers."""
        log.critical("STATE DIVERGED — stopping this node: %s. Its data directory is inconsistent with the "
                     "chain; wipe it and restart to resync.", reason)
        self.stop()
        if self._on_fatal is not None:
            self._on_fatal(reason)

    # ------------------------------------------------------------------------------------------ pacing

    def is_height_due(self) -> bool:
        """Start the next height when there is work (transactions, or results a header must commit), when a peer
        has already started it, or on every interval when the chain makes empty blocks. Block 1 is always made at
        once: a new network shows it can decide before anyone depends on it."""
        return bool(len(self.pool.mempool) or self.pool.results_pending or self.peer_activity
                    or self.params.create_empty_blocks or self.get_tip_height() == 0)

    def is_idle(self) -> bool:
        """No height running, none executing, none waiting for its block or its commit signatures."""
        return (not self.started and self.awaiting_block is None and self.applying is None
                and self.pending_decision is None)

    def _schedule_pace(self, delay_ms: int) -> None:
        if self._stopping:
            return
        if self._pace_timer is not None:
            self._pace_timer.cancel()
        self._pace_timer = self.clock.call_later(max(delay_ms, 0), self._on_pace)

    def _on_pace(self) -> None:
        """The pacer: start tip + 1 when idle, the block interval has passed and a height is due; otherwise look
        again (at the interval's end, or after pace_poll_ms; transactions and commits wake it earlier)."""
        self._pace_timer = None
        if self._stopping:
            return
        if not self.is_idle():
            self._schedule_pace(self.timing.pace_poll_ms)
            return
        wait = self.last_commit_at + self.params.block_interval_ms - self.clock.get_monotonic_ms()
        if wait <= 0 and self.is_height_due():
            self._start_height(self.get_tip_height() + 1)
            return
        self._schedule_pace(wait if wait > 0 else self.timing.pace_poll_ms)

    def on_work(self) -> None:
        """Something that may make a height due arrived (a transaction, a peer's message for tip + 1, a commit)."""
        if self.is_idle() and not self._stopping:
            self._schedule_pace(0)

    def _start_height(self, height: int) -> None:
        assert height == self.get_tip_height() + 1, "a height starts only on top of the committed tip"
        self.wal.reset(height)
        self.clear_height()
        self.started = True
        self._execute(self._core_step(None), replay=False)
        waiting = self.future.pop(height, [])
        self.future = {h: v for h, v in self.future.items() if h > height}
        self.future_count = sum(len(v) for v in self.future.values())
        for inp, record in waiting:
            if self.core.height == height and self.started:
                self._feed(inp, record)

    def clear_height(self) -> None:
        """Forget the finished height's working state (the tip moved)."""
        for t in self._timers.values():
            t.cancel()
        self._timers = {}
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
        self._vote_timing = {k: v for k, v in self._vote_timing.items() if k[0] > tip}
        self.held = {h: v for h, v in self.held.items() if h > tip}
        # Peers that already started the next height sent messages for it while we finished this one.
        self.peer_activity = bool(self.future.get(tip + 1))
        if self.pending_decision is not None and self.pending_decision[0] <= tip:
            self.pending_decision = None

    def on_synced(self) -> None:
        """Block sync moved the tip: the decision we waited for has a block now, and whatever round we were in is
        history (the next height starts from the pacer)."""
        tip_h = self.get_tip_height()
        if self.awaiting_block is not None and tip_h >= self.awaiting_block:
            self.awaiting_block = None
        if self.core.height <= tip_h and self.applying is None:
            self.started = False
            self.last_commit_at = -(1 << 62)
            self.clear_height()
        self.on_work()

    # ------------------------------------------------------------------------------------------ WAL replay

    def _replay(self) -> None:
        """Resume the height the WAL was written for, if it is still the next one to decide."""
        records = self.wal.records
        tip = self.get_tip_height()
        if not records or records[0] != WalHeight(tip + 1):
            return
        log.info("replaying %d WAL records for height %d", len(records) - 1, tip + 1)
        for rec in records[1:]:  # own signed messages: re-sent as they were, never signed anew
            if isinstance(rec, WalOwnProposal):
                self._signed[compute_own_key(rec.msg)] = rec.msg
            elif isinstance(rec, WalVote) and rec.vote.validator == self.address:
                self._signed[compute_own_key(rec.vote)] = rec.vote
        self.started = True
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

        absorb(self._core_step(None))
        for rec in records[1:]:
            if isinstance(rec, WalOwnProposal | WalHeight):
                continue
            inp = self._input_from_record(rec)
            if isinstance(inp, ProposalValueReady):
                pending_request = None
            elif isinstance(inp, ValidityAnswer):
                pending_validate.pop(inp.value_id, None)
            absorb(self._core_step(inp))
        if pending_request is not None and self.started:
            self._execute([pending_request], replay=False)
        if pending_validate and self.started:
            self._execute(list(pending_validate.values()), replay=False)

    def _input_from_record(self, rec: WalRecord) -> Input:
        """The core input a record stands for, restoring what the shell kept beside it."""
        if isinstance(rec, WalProposal):
            self._note_proposal(rec.msg, None)
            return ProposalReceived(self._to_proposal(rec.msg))
        if isinstance(rec, WalVote):
            own = rec.vote.validator == self.address
            self._note_vote(rec.vote, own=own)
            if own:
                self._fed_own.add(compute_own_key(rec.vote))
            return self._to_input_vote(rec.vote)
        if isinstance(rec, WalTimeout):
            return TimeoutElapsed(rec.kind, rec.height, rec.round)
        if isinstance(rec, WalValue):
            value = rec.block.header.encode()
            self.blocks[self.suite.hash(value)] = rec.block
            return ProposalValueReady(rec.height, rec.round, value)
        assert isinstance(rec, WalValidity), rec
        if rec.block is not None:
            self.blocks[rec.value_id] = rec.block
        return ValidityAnswer(rec.value_id, rec.valid)

    # ------------------------------------------------------------------------------------------ core IO

    def _core_step(self, inp: Input | None) -> list[Output]:
        """One step of the core (``None``: start the height tip + 1), shown to the observer."""
        lock = (self.core.locked_round, self.core.locked_id)
        if inp is None:
            height = self.get_tip_height() + 1
            outs = self.core.start_height(height, self.get_vset(height))
        else:
            outs = self.core.process(inp)
        if self.observer is not None:
            self.observer.on_core_step(self.core, outs, lock)
        return outs

    def _feed(self, inp: Input, record: WalRecord) -> None:
        """Log an input, give it to the core, carry out what it asks."""
        self.wal.append(record)
        self._execute(self._core_step(inp), replay=False)

    def _execute(self, outs: list[Output], replay: bool) -> None:
        for o in outs:
            if isinstance(o, Broadcast):
                self._on_broadcast(o.message, replay)
            elif isinstance(o, ScheduleTimeout):
                self._schedule(o)
            elif isinstance(o, RequestValue):
                self._on_request_value(o)
            elif isinstance(o, ValidateValue):
                self._on_validate(o)
            elif isinstance(o, Decide):
                self._on_decide(o)
            elif isinstance(o, EvidenceFound):
                self._on_evidence_found(o)

    def _schedule(self, o: ScheduleTimeout) -> None:
        def fire() -> None:
            if self._stopping or self.core.height != o.height or self.core.round != o.round:
                return
            self._feed(TimeoutElapsed(o.kind, o.height, o.round), WalTimeout(o.kind, o.height, o.round))

        self._call_later(o.duration_ms, fire)

    def _call_later(self, delay_ms: int, fn: Callable[[], None]) -> None:
        """A timer of this height (cancelled when the height ends; forgotten once it ran)."""
        token = object()

        def run() -> None:
            self._timers.pop(token, None)
            fn()

        self._timers[token] = self.clock.call_later(delay_ms, run)

    def _on_broadcast(self, message: Proposal | Vote, replay: bool) -> None:
        """Sign an own proposal or vote and send it, in the order of durability (docs/spec/consensus.md):

        1. the WAL — every input that led the core here — is synced;
        2. the signer guard accepts the message and its new state is made durable;
        3. the message is signed and appended to the WAL (a vote as an input record), which is synced;
        4. it is sent;
        5. a vote is fed back to the core, which counts it only now (``count_own_votes=False``).

        A message signed before a restart (found in the replayed WAL) is re-sent exactly as it was, never signed
        anew. A message the guard refuses is neither sent nor counted: the core then holds no vote of ours that
        does not exist, so no decision (and no stored commit) can rest on it."""
        key = compute_own_key(message)
        earlier = self._signed.get(key)
        if earlier is not None:
            if earlier not in self.own:
                self.own.append(earlier)
            if not replay and self.network is not None:
                self.network.broadcast(earlier)
            if isinstance(earlier, SignedVote) and not replay and key not in self._fed_own:
                self._fed_own.add(key)
                self._execute(self._core_step(self._to_input_vote(earlier)), replay)
            return
        if self.wal.is_dirty:
            self.wal.sync()  # (1)
        try:
            new_state = check_sign(self.guard, message)
        except SignRefused as exc:
            log.error("signer guard: %s", exc)
            self.sign_refusals += 1
            if self.observer is not None:
                self.observer.on_guard_refused(message, str(exc))
            return
        if new_state != self.guard:
            self.signer_store.save(new_state)  # (2)
            self.guard = new_state
        wire = self._sign(message)
        if wire is None:
            return
        if self.observer is not None:
            self.observer.on_signed(wire)
        if isinstance(wire, ProposalMsg):
            self.wal.append(WalOwnProposal(wire))
        else:
            self.wal.append(WalVote(wire))
            self._note_vote(wire, own=True)
        self.wal.sync()  # (3)
        self._signed[key] = wire
        self.own.append(wire)
        if not replay and self.network is not None:
            self.network.broadcast(wire)  # (4)
        if isinstance(wire, SignedVote):
            self._fed_own.add(key)
            self._execute(self._core_step(self._to_input_vote(wire)), replay)  # (5)

    def _sign(self, message: Proposal | Vote) -> ProposalMsg | SignedVote | None:
        """Sign a message the guard has accepted (its state already durable)."""
        if isinstance(message, Proposal):
            block = self.blocks.get(message.value_id)
            if block is None:
                log.error("no block for own proposal %s", message.value_id.hex()[:16])
                return None
            vr = message.valid_round + 1
            sig = self.signer.sign(compute_proposal_sign_bytes(self.chain_id, message.height, message.round,
                                                               message.value_id, vr))
            signed = tuple(compute_signed_tx_hash(self.suite, tx) for tx in block.txs)
            return ProposalMsg(message.round, vr, block.header, signed, block.last_commit, block.evidence,
                               message.proposer, sig)
        kind = PREVOTE if message.type == VoteType.PREVOTE else PRECOMMIT
        bid = message.value_id or b""
        sig = self.signer.sign(compute_vote_sign_bytes(self.chain_id, kind, message.height, message.round, bid))
        return SignedVote(kind, message.height, message.round, bid, message.validator, sig)

    def _on_request_value(self, o: RequestValue) -> None:
        """getValue(): build a block from the mempool on top of the tip."""
        parent = self.ledger.get_parent_info()
        if o.height != parent.height + 1:
            return
        mempool = self.pool.mempool
        dead: list[bytes] = []

        def includable(e: PoolEntry) -> bool:
            try:
                check_tx_window(self.rules, e.tx, o.height)
            except TxRejected:
                dead.append(e.tx_hash)
                return False
            return True

        params = parent.get_params(self.params)  # the limits governed for this height (execution/params.py)
        entries = mempool.get_batch(params.max_block_txs, params.max_block_bytes - 64 * 1024, includable)
        evidence = self._get_due_evidence(parent)
        # Committed transactions leave the mempool when their block commits; one batched lookup guards the rest.
        on_chain = self.ledger.get_committed(e.tx_hash for e in entries)
        if on_chain:
            dead += on_chain
            entries = [e for e in entries if e.tx_hash not in on_chain]
        mempool.process_remove(dead)
        last_commit = self.ledger.get_commit(parent.height) if parent.height else None
        header = make_header(self.rules, parent, self.clock.get_wall_ms(), [e.signed_hash for e in entries],
                             last_commit, self.address, evidence)
        block = Block(header, tuple(e.tx for e in entries), last_commit, evidence)
        value = header.encode()
        self.blocks[self.suite.hash(value)] = block
        self._feed(ProposalValueReady(o.height, o.round, value), WalValue(o.height, o.round, block))

    # ------------------------------------------------------------------------------------------ valid(v)

    def _on_validate(self, o: ValidateValue) -> None:
        """valid(v): our own block is valid; another's is assembled (the mempool reactor fetches what is missing),
        its signatures verified (each once, off the shell's thread in the node) and the block checks run. The
        answer always comes later, as a new input — never inside the step that asked."""
        block = self.blocks.get(o.value_id)
        if block is not None:
            own = block
            self._call_later(0, lambda: self._answer_validity(o, own, True))
            return
        parts = self.parts.get(o.value_id)
        if parts is None or self.blocks_source is None:
            self._call_later(0, lambda: self._answer_validity(o, None, False))
            return
        self.blocks_source.assemble(parts.msg, parts.sender, lambda b: self._on_assembled(o, parts, b))

    def _on_assembled(self, o: ValidateValue, parts: Parts, block: Block | None) -> None:
        if block is None or self._stopping:
            self._answer_validity(o, None, False)
            return
        hashes = [compute_tx_hash(self.suite, tx.body) for tx in block.txs]
        self.pool.verify_many(list(zip(block.txs, hashes, strict=True)),
                              lambda verdicts: self._on_verified(o, block, hashes, verdicts))

    def _on_verified(self, o: ValidateValue, block: Block, hashes: list[bytes], verdicts: Mapping[bytes, bool]) -> None:
        if not all(verdicts.values()):
            log.warning("proposal %s at height %d carries a transaction with a bad signature", o.value_id.hex()[:16],
                        o.height)
            self._answer_validity(o, None, False)
            return
        valid, raw = False, None
        try:
            parent = self.ledger.get_parent_info()
            if block.header.height != parent.height + 1:
                raise BlockInvalid("proposal is not for the next height")
            raw = block.encode()
            check_block_limits(parent.get_params(self.params), block.header.height, len(block.txs), len(raw))
            on_chain = self.ledger.get_committed(hashes)
            check_block(self.rules, parent, block, hashes, on_chain.__contains__,
                        self.pool.get_sig_checked(block.txs, hashes))
            valid = True
        except BlockInvalid as exc:
            log.warning("proposal %s at height %d is invalid: %s", o.value_id.hex()[:16], o.height, exc)
        self._answer_validity(o, block if valid else None, valid, raw if valid else None)

    def _answer_validity(self, o: ValidateValue, block: Block | None, valid: bool,
                         block_bytes: bytes | None = None) -> None:
        if self._stopping or self.core.height != o.height or not self.started:
            return
        if valid and block is not None:
            self.blocks[o.value_id] = block
        self._feed(ValidityAnswer(o.value_id, valid),
                   WalValidity(o.value_id, valid, block if valid else None, block_bytes))

    # ------------------------------------------------------------------------------------------ decide, commit

    def _on_decide(self, d: Decide) -> None:
        """The core decided (L49). Store the block only with a commit that passes check_commit — the same check
        a light client and block sync apply — then execute it through the ledger port."""
        block_id = self.suite.hash(d.value)
        block = self.blocks.get(block_id)
        self.started = False
        if block is None:
            log.warning("decided height %d without its transactions; fetching it from peers", d.height)
            self.awaiting_block = d.height
            if self.sync is not None:
                self.sync.request_sync(force=True)
            return
        commit = self._make_commit(d.height, d.round, block_id)
        if commit is None:
            self.pending_decision = (d.height, d.round, block_id)
            if self.sync is not None:
                self.sync.request_sync(force=True)
            return
        self._commit_decided(block, commit)

    def _make_commit(self, height: int, round_: int, block_id: bytes) -> Commit | None:
        """The commit of a decision from the verified precommit signatures held, if they pass check_commit."""
        sigs = sorted((k[4], s) for k, s in self.sigs.items()
                      if k[0] == PRECOMMIT and k[1] == height and k[2] == round_ and k[3] == block_id)
        commit = Commit(height, round_, block_id, tuple(CommitSig(v, s) for v, s in sigs))
        try:
            validators = self.ledger.get_validators(height)
            if validators is None:  # tip + 1 here, so always known; a guard, not a path
                raise BlockInvalid(f"the validator set of height {height} is not known yet")
            check_commit(self.suite, self.chain_id, validators, commit, block_id, height)
        except BlockInvalid as exc:
            log.warning("decided height %d but its commit does not pass yet (%s); waiting for precommits or sync",
                        height, exc)
            return None
        return commit

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
        """Compare the decided block with this node's state and hand it to the applier.

        The comparison is only meaningful against the decided block's own parent. Block sync may have stored the
        decided height (and more) while the core was still deciding it: a lagging node fetches blocks from a peer
        while precommits of its current height keep arriving from the others, and block sync tells consensus only
        at the end of its batch. The tip is then the decided block itself or later, whose state root naturally
        differs from the one the decided header names — that is not a divergence (it stopped a node with a false
        "STATE DIVERGED"; docs/spec/consensus.md, "One view of the chain"). A stored block at that height that is
        not the decided one is."""
        parent = self.ledger.get_parent_info()
        if block.header.height <= parent.height:
            # Block sync stored this height while the core was still deciding it (an observer or a catching-up
            # node follows both): nothing to apply — unless the stored block is another one.
            stored = self.ledger.get_commit(block.header.height)
            if stored is None or stored.block_id != commit.block_id:
                self._fatal(f"block {block.header.height} decided by the network is not the one block sync stored")
                return
            self.on_synced()
            return
        assert block.header.height == parent.height + 1, "a decided height is never beyond the tip + 1"
        if (block.header.state_root, block.header.receipts_root) != (parent.state_root, parent.receipts_root):
            self._fatal(f"block {block.header.height} decided by the network carries state root "
                        f"{block.header.state_root.hex()[:16]}…, this node has {parent.state_root.hex()[:16]}…")
            return
        hashes = [compute_tx_hash(self.suite, tx.body) for tx in block.txs]
        for ev in block.evidence:
            self.evidence.pop(compute_evidence_hash(self.suite, ev), None)
        self.applying = block.header.height
        self.applier.apply(block, commit, hashes, lambda stored, error: self._on_committed(hashes, error))

    def _on_committed(self, hashes: list[bytes], error: BaseException | None) -> None:
        """The decided block is durable (or execution failed: the node halts loudly, never silently)."""
        self.applying = None
        if error is not None:
            self._fatal(f"committing a decided block failed: {error}")
            return
        if self.on_stored is not None:
            self.on_stored(hashes)
        self.last_commit_at = self.clock.get_monotonic_ms()
        self.clear_height()
        self.on_work()

    # ------------------------------------------------------------------------------------------ peer messages

    def on_peer_up(self, address: bytes) -> None:
        """A peer (re)connected: re-send what we hold of this height — our own messages and the other validators'
        (it may have missed them while it was down or cut off)."""
        if self.network is None:
            return
        for m in self.own:
            self.network.send(address, m)
        for m in self.held.get(self.get_tip_height() + 1, [])[-MAX_ANTI_ENTROPY_BATCH:]:
            self.network.send(address, m)
        if self.evidence:
            self.network.send(address, EvidenceMsg(tuple(self.evidence.values())[-MAX_EVIDENCE_PER_MESSAGE:]))

    def on_vote(self, sv: SignedVote, sender: bytes | None = None) -> None:
        """A vote from a peer. Raises PeerViolation for provably bad input."""
        if sv.kind not in (PREVOTE, PRECOMMIT):
            raise PeerViolation(f"vote of unknown kind {sv.kind}")
        key = (sv.kind, sv.height, sv.round, sv.block_id, sv.validator)
        if key in self.sigs or not self._is_relevant(sv.height):
            return
        if self.ledger.get_validators(sv.height) is None:
            return  # beyond tip + 2: its set cannot be known yet; anti-entropy re-sends it when it matters
        pub = self.ledger.get_public_key(sv.height, sv.validator)
        if pub is None:
            raise PeerViolation(f"vote by {sv.validator.hex()}, not a validator of height {sv.height}")
        far = sv.round > self._get_round_limit(sv.height)
        if not far and (self._slot_values.get((sv.height, sv.round, sv.kind, sv.validator), 0) >= MAX_VALUES_PER_SLOT
                        or not self._has_room(sv.height)):
            return
        if not self.suite.verify(pub, compute_vote_sign_bytes(self.chain_id, sv.kind, sv.height, sv.round,
                                                              sv.block_id), sv.signature):
            raise PeerViolation("vote signature does not verify")
        record = WalVote(sv)
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

    def on_proposal(self, msg: ProposalMsg, sender: bytes | None) -> None:
        """A proposal: from this round's proposer only, within the windows, its unsigned parts (transaction
        hashes, parent commit) bound to the signed header, and a block small enough — checked before anything is
        kept, relayed or fetched. Raises PeerViolation for provably bad input."""
        h = msg.header
        if not self._is_relevant(h.height):
            return
        p = self._to_proposal(msg)
        if p.value_id in self.parts and self.parts[p.value_id].msg.round == msg.round:
            return
        vset = self.ledger.get_consensus_validators(h.height)
        if vset is None or msg.proposer != vset.get_proposer(h.height, msg.round):
            return  # set not known yet, or not this round's proposer (L22/L28): the core would ignore it
        pub = self.ledger.get_public_key(h.height, msg.proposer)
        if pub is None:
            raise PeerViolation(f"proposal by {msg.proposer.hex()}, not a validator of height {h.height}")
        far = msg.round > self._get_round_limit(h.height)
        if not far and (self._parts_per_round.get((h.height, msg.round), 0) >= MAX_PROPOSALS_PER_ROUND
                        or not self._has_room(h.height)):
            return
        try:
            check_block_limits(self._get_params(h.height), h.height, h.tx_count, None)
        except BlockInvalid as exc:
            log.warning("proposal by %s dropped: %s", msg.proposer.hex()[:16], exc)
            return
        if not self.suite.verify(pub, compute_proposal_sign_bytes(self.chain_id, h.height, msg.round, p.value_id,
                                                                  msg.valid_round), msg.signature):
            raise PeerViolation("proposal signature does not verify")
        if len(msg.signed_hashes) != h.tx_count or compute_txs_root(self.suite, msg.signed_hashes) != h.txs_root:
            raise PeerViolation("proposal lists transactions its header does not commit to")
        if compute_commit_hash(self.suite, msg.last_commit) != h.last_commit_hash:
            raise PeerViolation("proposal carries a parent commit its header does not commit to")
        if compute_evidence_root(self.suite, msg.evidence) != h.evidence_hash:
            raise PeerViolation("proposal carries evidence its header does not commit to")
        record = WalProposal(msg)
        if far:
            if self._is_far_round_taken(h.height, msg.proposer, msg.round):
                self.parts[p.value_id] = Parts(msg, sender)
                self._feed(ProposalReceived(p), record)
            return
        self._note_proposal(msg, sender)
        self._relay(msg, sender, msg.proposer)
        self._deliver(h.height, ProposalReceived(p), record)

    def get_block_tx(self, signed_hash: bytes) -> Transaction | None:
        """The transaction with this signed hash in one of this height's assembled blocks (to answer a peer's
        GetTxs)."""
        for b in self.blocks.values():
            for t in b.txs:
                if compute_signed_tx_hash(self.suite, t) == signed_hash:
                    return t
        return None

    # ------------------------------------------------------------------------------------------ evidence

    def _on_evidence_found(self, o: EvidenceFound) -> None:
        """The core saw one validator sign two votes for one (height, round, type): build the signed evidence item
        from the two verified signatures held, keep it for a block and gossip it."""
        first, second = o.evidence.first, o.evidence.second
        log.warning("equivocation by %s at height %d round %d", first.validator.hex(), first.height, first.round)
        votes = []
        for v in (first, second):
            kind = PREVOTE if v.type == VoteType.PREVOTE else PRECOMMIT
            bid = v.value_id or b""
            sig = self.sigs.get((kind, v.height, v.round, bid, v.validator))
            if sig is None:
                return  # a vote taken beyond the round window: its signature was not kept, no provable item
            votes.append(SignedVote(kind, v.height, v.round, bid, v.validator, sig))
        ev = make_evidence(votes[0], votes[1])
        if self._keep_evidence(ev) and self.network is not None:
            self.network.broadcast(EvidenceMsg((ev,)))

    def _keep_evidence(self, ev: Evidence) -> bool:
        """Add a verified item to the pending set; False if it was there already."""
        eh = compute_evidence_hash(self.suite, ev)
        if eh in self.evidence:
            return False
        self.evidence[eh] = ev
        while len(self.evidence) > MAX_PENDING_EVIDENCE:
            del self.evidence[next(iter(self.evidence))]
        return True

    def on_evidence(self, msg: EvidenceMsg, sender: bytes | None) -> None:
        """Evidence gossiped by a peer: each new item is verified before it is kept or relayed (once, to the other
        peers). Items that cannot be checked or used any more (committed, outside the age window, of a height
        whose set is not known yet) are dropped quietly — a correct peer may send them; an item that is not an
        equivocation, names a non-validator or carries a bad signature is a protocol violation."""
        parent = self.ledger.get_parent_info()
        is_committed = parent.is_evidence_committed or (lambda _h: False)
        fresh: list[Evidence] = []
        for ev in msg.items:
            try:
                check_evidence_shape(ev)
            except EvidenceInvalid as exc:
                raise PeerViolation(str(exc)) from None
            eh = compute_evidence_hash(self.suite, ev)
            e = ev.vote_a.height
            if eh in self.evidence or is_committed(eh) or parent.height + 1 - e > MAX_EVIDENCE_AGE_BLOCKS \
                    or self.ledger.get_validators(e) is None:
                continue
            try:
                check_evidence(self.suite, self.chain_id, ev, max(parent.height + 1, e + 1),
                               self.ledger.get_validators, is_committed)
            except EvidenceInvalid as exc:
                raise PeerViolation(f"peer sent invalid evidence: {exc}") from None
            if self._keep_evidence(ev):
                fresh.append(ev)
        if fresh and self.network is not None:
            self.network.broadcast(EvidenceMsg(tuple(fresh)), exclude={sender} if sender is not None else set())

    def _get_due_evidence(self, parent: ParentInfo) -> tuple[Evidence, ...]:
        """Pending items a block on ``parent`` may carry (oldest first, ≤ MAX_BLOCK_EVIDENCE); items committed
        meanwhile (by this node's blocks or by block sync) or aged out are dropped. Signatures were verified when
        the item was kept and the set of a past height never changes, so nothing is verified again here."""
        height = parent.height + 1
        is_committed = parent.is_evidence_committed or (lambda _h: False)
        out: list[Evidence] = []
        for eh, ev in list(self.evidence.items()):
            if is_committed(eh) or height - ev.vote_a.height > MAX_EVIDENCE_AGE_BLOCKS:
                del self.evidence[eh]
            elif is_evidence_due(ev, height) and len(out) < MAX_BLOCK_EVIDENCE:
                out.append(ev)
        return tuple(out)

    # ------------------------------------------------------------------------------------------ anti-entropy

    def process_anti_entropy(self) -> None:
        """Stuck on a height for anti_entropy_ms: re-send our own messages of it to every peer and the others'
        we hold to one peer in turn. Frames lost to a crash or a cut link (a killed node's unsent precommit, a
        proposal only the dead proposer had sent) reach every live node again, so no two correct nodes stay in
        different rounds for want of one message."""
        net = self.network
        if net is None or not self.started:
            return
        if self.clock.get_monotonic_ms() - self.last_commit_at < self.timing.anti_entropy_ms:
            return
        for m in self.own[-MAX_ANTI_ENTROPY_BATCH:]:
            net.broadcast(m)
        peers = sorted(net.get_peers())
        held = self.held.get(self.core.height, [])
        if peers and held:
            target = peers[self._ae_turn % len(peers)]
            self._ae_turn += 1
            for m in held[-MAX_ANTI_ENTROPY_BATCH:]:
                net.send(target, m)

    # ------------------------------------------------------------------------------------------ bounds

    def _is_relevant(self, height: int) -> bool:
        """Whether a consensus message for `height` is kept: heights tip + 1 … tip + FUTURE_HEIGHT_WINDOW. A
        message from further ahead only tells us we are behind."""
        tip = self.get_tip_height()
        if height > self.get_base_height() + 1 and self.sync is not None:
            self.sync.request_sync()
        return tip < height <= tip + FUTURE_HEIGHT_WINDOW

    def _get_params(self, height: int) -> ChainParams:
        """The block limits of ``height`` for the cheap checks before a proposal is stored: the governed ones when
        ``height`` is tip + 1 (the tip's state holds them); for tip + 2 the hard bounds (execution/params.py) —
        the full check with that height's limits runs when its value is validated."""
        parent = self.ledger.get_parent_info()
        if height == parent.height + 1:
            return parent.get_params(self.params)
        return replace(self.params, max_block_txs=MAX_BLOCK_TXS_BOUND, max_block_bytes=MAX_BLOCK_BYTES_BOUND)

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

    def _deliver(self, height: int, inp: Input, record: WalRecord) -> None:
        """Feed a verified message to the core now, or keep it until its height starts (bounded by the caller)."""
        if self._can_feed(height):
            self._feed(inp, record)
            return
        if height == self.get_tip_height() + 1:
            self.peer_activity = True
            self.on_work()
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
        if self.network is not None:
            self.network.broadcast(msg, exclude={a for a in (sender, signer) if a is not None})
            self.relayed += 1

    def _note_vote(self, sv: SignedVote, own: bool) -> None:
        """Remember a verified vote: its signature (commits, dedup), its slot count, and (others') for re-sending."""
        self.sigs[(sv.kind, sv.height, sv.round, sv.block_id, sv.validator)] = sv.signature
        slot = (sv.height, sv.round, sv.kind, sv.validator)
        first_of_slot = slot not in self._slot_values
        self._slot_values[slot] = self._slot_values.get(slot, 0) + 1
        if first_of_slot:
            self._note_vote_timing(sv)
        if not own:
            self._hold(sv.height, sv)

    def _note_vote_timing(self, sv: SignedVote) -> None:
        """Time from the first vote of a (height, round, type) to a quorum of that type (each validator's power
        counted once). Execution runs beside consensus on a worker thread; this is the figure that shows whether
        a long block delays the other validators' votes (docs/benchmarks.md, ``qilian bench votes``)."""
        key = (sv.height, sv.round, sv.kind)
        now = self.clock.get_monotonic_ms()
        timing = self._vote_timing.get(key)
        if timing is None:
            if len(self._vote_timing) >= MAX_VOTE_TIMINGS:
                return
            timing = self._vote_timing[key] = [now, 0, 0]
        if timing[2]:
            return
        vset = self.ledger.get_consensus_validators(sv.height)
        if vset is None:
            return
        timing[1] += vset.get_power(sv.validator)
        if vset.is_quorum(timing[1]):
            timing[2] = 1
            self.quorum_delays.append((sv.kind, now - timing[0]))

    def _note_proposal(self, msg: ProposalMsg, sender: bytes | None) -> None:
        value_id = self.suite.hash(msg.header.encode())
        self.parts[value_id] = Parts(msg, sender)
        key = (msg.header.height, msg.round)
        self._parts_per_round[key] = self._parts_per_round.get(key, 0) + 1
        if msg.proposer != self.address:
            self._hold(msg.header.height, msg)
