"""The deterministic discrete-event simulator: N nodes running the production shell (:class:`qilian.shell.shell.Shell`
— consensus, mempool and block-sync reactors, the real Tendermint core, WAL, signer guard, block building, execution
and block sync) over in-memory ports, a hostile network, crashes at durable operations and Byzantine validators —
everything drawn from one seed.

Why: the shell is where the remaining faults live (the order of durability, replay, relay, sync), so the simulator
runs *that* code, not a model of it (TigerBeetle's VOPR and FoundationDB's simulation are the models). Every
interleaving is a seed; a failure replays exactly (`qilian sim --seed S ...`), and the same seed always gives the
same trace hash (nothing depends on wall time, `hash()` order or floats).

What is simulated (docs/spec/consensus.md, "Simulator"): time (an integer tick = 1 ms; per-node clock drift), the
network (delay, jitter, drop, duplicate, reorder tail, partitions; messages are the real signed wire objects), the
disk (:mod:`qilian.sim.disk`: crash before any numbered durable operation, torn writes, power loss), clients
submitting real signed transactions, and Byzantine validators (their shell is real; their network port forges the
extra signed messages of each behaviour)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
import itertools
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qilian.consensus import Proposal, SignerState, Vote, VoteType
from qilian.consensus.core import Core
from qilian.consensus.types import Broadcast, Output
from qilian.crypto import get_suite
from qilian.execution.block import ParentInfo, compute_empty_root
from qilian.execution.contracts import compute_genesis_writes
from qilian.execution.rules import ChainRules
from qilian.p2p.messages import (
    Blocks,
    GetBlocks,
    GetTxs,
    PeerViolation,
    ProposalMsg,
    Status,
    TxBatch,
    compute_proposal_sign_bytes,
)
from qilian.shell.shell import Shell
from qilian.shell.timing import ShellTiming
from qilian.sim.checkers import Checker, Violation, compute_core_message
from qilian.sim.config import FAULTS, SimConfig
from qilian.sim.disk import Disk, EarlyValsetLedger, Ledger, MemLedger, MemSignerStore, MemWal, SimCrash, SimTxPool
from qilian.sim.rng import Rng
from qilian.state import ZERO_HASH, MemoryNodeStore, StateTree
from qilian.types.core import (
    PRECOMMIT,
    PREVOTE,
    Block,
    ChainParams,
    Commit,
    Genesis,
    Member,
    Organisation,
    TxBody,
    Validator,
    ValidatorSet,
    compute_tx_hash,
    compute_vote_sign_bytes,
    sign_tx,
)
from qilian.types.core import Vote as SignedVote
from qilian.types.struct import Wire

CORRECT = "correct"
SUITE = "ed25519"
CHAIN_ID = "qilian-sim"
GENESIS_TIME_MS = 1_700_000_000_000

SIM_TIMING = ShellTiming(fetch_timeout_ms=400, fetch_round_delta_ms=100, fetch_timeout_cap_ms=3000, fetch_retry_ms=100,
                         status_interval_ms=300, sync_timeout_ms=1000, anti_entropy_ms=300, tx_gossip_ms=10,
                         pace_poll_ms=50)
"""The shell's periods scaled down with the simulator's timeouts (same shape as the node's)."""
SIM_PARAMS = ChainParams(block_interval_ms=20, create_empty_blocks=True)
"""Genesis parameters: a block every 20 ticks, empty ones too, so heights move without a workload."""

_DELIVER, _CALL, _FAULT, _RESTART, _HEAL, _CLIENT = range(6)


class _Timer:
    """A timer handle of the simulated clock."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(slots=True)
class SimNode:
    """One simulated process."""

    idx: int
    address: bytes
    private_key: bytes
    role: str
    """`correct`, or a Byzantine behaviour."""
    disk: Disk
    up: bool = False
    epoch: int = 0
    """Incarnation: events of an earlier incarnation are ignored."""
    shell: Shell | None = None
    pool: SimTxPool | None = None
    peer_heights: dict[bytes, int] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)
    """Rule counts of earlier incarnations (the core's own counts die with it)."""
    synced: int = 0
    """Blocks applied by block sync in earlier incarnations."""
    lock_at_crash: tuple[int, int] = (-1, -1)
    restarts: int = 0
    evidence: int = 0

    @property
    def is_correct(self) -> bool:
        """Counts for agreement, liveness and double signing."""
        return self.role == CORRECT

    @property
    def height(self) -> int:
        """Next height to decide."""
        return self.disk.ledger.tip.height + 1


@dataclass(frozen=True, slots=True)
class SimResult:
    """Outcome of one run."""

    config: SimConfig
    """What ran."""
    trace_hash: str
    """SHA-256 over every processed event, in order."""
    violations: tuple[Violation, ...]
    """Broken invariants (empty: the run passed)."""
    heights: int
    """Heights committed by every correct node."""
    max_round: int
    """Highest round of a stored commit."""
    messages: int
    """Messages put on the network (after drops at the sender)."""
    delivered: int
    """Messages delivered to a running node."""
    events: int
    """Simulated events processed."""
    ticks: int
    """Simulated time at the end."""
    heal_tick: int
    """When the chaos phase ended."""
    liveness_ticks: int | None
    """Ticks from the heal until every correct node committed the target height (None: not reached)."""
    probes: dict[str, int]
    """Coverage probes (docs/spec/consensus.md)."""
    faults: dict[str, int]
    """How often each fault kind acted, plus `crash points` (crashes taken at a durable operation)."""
    roles: tuple[str, ...]
    """Role of each simulated node."""
    powers: tuple[int, ...]
    """Voting power of each validator."""
    trace_tail: tuple[str, ...]
    """Last trace lines (for a failure report)."""

    @property
    def ok(self) -> bool:
        """No invariant broken."""
        return not self.violations


def describe(m: object) -> str:
    """Short stable text of a message for the trace."""
    if isinstance(m, ProposalMsg):
        return f"P{m.header.height}.{m.round}.{m.header.time_ms % 100000}.{m.valid_round - 1}"
    if isinstance(m, SignedVote):
        vid = "nil" if not m.block_id else m.block_id.hex()[:6]
        return f"{'V' if m.kind == PREVOTE else 'C'}{m.height}.{m.round}.{vid}.{m.validator.hex()[:4]}"
    if isinstance(m, Status):
        return f"S{m.height}.{m.round}"
    if isinstance(m, GetBlocks):
        return f"G{m.start}+{m.count}"
    if isinstance(m, Blocks):
        return f"B{len(m.items)}"
    if isinstance(m, TxBatch):
        return f"X{len(m.txs)}"
    if isinstance(m, GetTxs):
        return f"Q{len(m.hashes)}"
    return type(m).__name__


class SimClock:
    """Clock port of one node incarnation: the world's tick, drifted timers, wall time from genesis."""

    def __init__(self, world: World, node: SimNode):
        self.world = world
        self.node = node
        self.epoch = node.epoch

    def get_monotonic_ms(self) -> int:
        return self.world.now

    def get_wall_ms(self) -> int:
        return GENESIS_TIME_MS + self.world.now

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> _Timer:
        handle = _Timer()
        self.world.push_call(self.node, self.epoch, self.world.drifted(self.node, delay_ms), callback, handle)
        return handle


class SimNetwork:
    """Network port of one node: the world's links, addressed by node address."""

    def __init__(self, world: World, node: SimNode):
        self.world = world
        self.node = node

    def _observe(self, msg: Wire) -> None:
        if self.node.is_correct and isinstance(msg, ProposalMsg | SignedVote):
            self.world.checker.on_send_own(self.node.idx, self.node.address, msg)

    def send(self, address: bytes, msg: Wire) -> bool:
        self._observe(msg)
        sent = False
        for other in self.world.nodes:
            if other.address == address and other.idx != self.node.idx:
                sent = self.world.send(self.node, other, msg) or sent
        return sent

    def broadcast(self, msg: Wire, exclude: frozenset[bytes] | set[bytes] = frozenset()) -> None:
        self._observe(msg)
        for other in self.world.nodes:
            if other.idx != self.node.idx and other.address not in exclude:
                self.world.send(self.node, other, msg)

    def get_peers(self) -> list[bytes]:
        return sorted({o.address for o in self.world.nodes if o.idx != self.node.idx and o.up
                       and o.address != self.node.address and not self.world.cut[self.node.idx][o.idx]})

    def get_peer_height(self, address: bytes) -> int:
        return self.node.peer_heights.get(address, 0)

    def set_peer_height(self, address: bytes, height: int) -> None:
        self.node.peer_heights[address] = height

    def report_violation(self, address: bytes | None, reason: str) -> None:
        self.world.on_peer_violation(self.node, address, reason)


class ByzantineNetwork(SimNetwork):
    """A Byzantine validator's network port: its shell is the real one; this port forges what the behaviour adds
    to each own proposal or vote (they collude: one split of the network per height)."""

    def broadcast(self, msg: Wire, exclude: frozenset[bytes] | set[bytes] = frozenset()) -> None:
        node = self.node
        own = (isinstance(msg, ProposalMsg) and msg.proposer == node.address) or (
            isinstance(msg, SignedVote) and msg.validator == node.address)
        if not isinstance(msg, ProposalMsg | SignedVote) or not own:
            super().broadcast(msg, exclude)
            return
        self.world.byzantine_send(node, msg)


class _Observer:
    """Shell observer of one node: feeds the checkers."""

    def __init__(self, world: World, node: SimNode):
        self.world = world
        self.node = node

    def on_core_step(self, core: Core, outputs: list[Output], lock_before: tuple[int, bytes | None]) -> None:
        own = [o.message for o in outputs if isinstance(o, Broadcast)]
        if self.node.is_correct:
            self.world.checker.on_core_step(self.node.idx, core, own, lock_before)

    def on_signed(self, wire: ProposalMsg | SignedVote) -> None:
        self.world.checker.on_sign(self.node.idx, self.world.to_core(wire), self.node.is_correct, wire)

    def on_guard_refused(self, message: Proposal | Vote, reason: str) -> None:
        if self.node.is_correct:
            self.world.checker.on_guard_refused(self.node.idx, message, reason)


class World:
    """One simulation run. `World(config).run()` → `SimResult`."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        root = Rng(cfg.seed)
        setup = root.fork("setup")
        self.rng_net = root.fork("net")
        self.rng_fault = root.fork("faults")
        self.rng_byz = root.fork("byzantine")
        self.rng_app = root.fork("app")
        self.rng_disk = root.fork("disk")
        n = cfg.nodes
        self.suite = get_suite(SUITE)
        spares = 1 if cfg.valset_changes else 0  # validator-role nodes outside the genesis set: observers
        keys = [self.suite.private_key_from_seed(hashlib.sha256(b"qilian-sim-validator:%d" % i).digest())
                for i in range(n + spares)]
        pubs = [self.suite.get_public_key(k) for k in keys]
        addrs = [self.suite.compute_address(p) for p in pubs]
        self.powers = tuple(setup.between(1, 10) for _ in range(n)) if cfg.weighted else (1,) * n
        self.client_key = self.suite.private_key_from_seed(hashlib.sha256(b"qilian-sim-client").digest())
        client_pub = self.suite.get_public_key(self.client_key)
        # With validator-set changes the client is the organisation's admin: its proposal alone is a majority.
        members = (*(Member(f"node{i}", pubs[i], ("validator",)) for i in range(n + spares)),
                   Member("client", client_pub, ("admin", "member") if spares else ("member",)))
        self.genesis = Genesis(CHAIN_ID, SUITE, GENESIS_TIME_MS, (Organisation("org1", members),),
                               ValidatorSet(tuple(Validator(addrs[i], pubs[i], self.powers[i]) for i in range(n))),
                               SIM_PARAMS)
        self.rules = ChainRules.from_genesis(self.genesis, self.suite)
        self.tree_nodes = MemoryNodeStore()
        writes = compute_genesis_writes(self.genesis)
        groot, gnodes = StateTree(self.suite.hash, self.tree_nodes).apply_writes(ZERO_HASH, writes)
        self.tree_nodes.put_nodes(gnodes)
        self.genesis_tip = ParentInfo(0, b"", GENESIS_TIME_MS, groot, compute_empty_root(self.suite),
                                      self.genesis.validators)
        self.genesis_values = {k: v for k, v in writes.items() if v is not None}
        byz = self._choose_byzantine(setup, n)
        self.nodes: list[SimNode] = []
        for i in range(n):
            role = self.rng_byz.pick(list(range(len(cfg.behaviours)))) if i in byz else -1
            name = CORRECT if role < 0 else cfg.behaviours[role]
            copies = 2 if name == "dup-key" else 1
            for _ in range(copies):
                self.nodes.append(SimNode(len(self.nodes), addrs[i], keys[i], name, self._new_disk()))
        for i in range(n, n + spares):
            self.nodes.append(SimNode(len(self.nodes), addrs[i], keys[i], CORRECT, self._new_disk()))
        correct_validators = [i for i in range(n) if i not in byz]
        self.gov_plan: list[tuple[tuple[bytes, bytes, int], ...]] = []
        """Validator-set changes the client proposes, one after the other (cfg.valset_changes)."""
        if spares:
            c0, c1 = correct_validators[0], correct_validators[1]
            self.gov_plan = [((addrs[n], pubs[n], 1),),  # the observer becomes a validator
                             ((addrs[c0], pubs[c0], 2),),  # a power change
                             ((addrs[c1], pubs[c1], 0),)]  # a removal (then an observer)
        self.gov_next = 0
        """Index in gov_plan of the change being proposed."""
        self.gov_raw: bytes | None = None
        """The signed proposal of that change (re-sent unchanged until a correct node stores it)."""
        self.gov_hash = b""
        self.gov_sent_at = 0
        self.gov_after = 3
        """The next change is proposed once a correct node stored this height."""
        m = len(self.nodes)
        self.base_delay = [[setup.between(2, 25) for _ in range(m)] for _ in range(m)]
        self.drift = [setup.between(-50, 50) if "drift" in cfg.faults else 0 for _ in range(m)]
        self.drop_permille = setup.between(10, 150) if "drop" in cfg.faults else 0
        self.dup_permille = setup.between(10, 100) if "dup" in cfg.faults else 0
        self.tail_permille = 30 if "reorder" in cfg.faults else 0
        self.cut = [[False] * m for _ in range(m)]
        self.correct_keys = {nd.address for nd in self.nodes if nd.is_correct}
        vset = {addrs[i]: self.powers[i] for i in range(n)}
        self.checker = Checker(vset, self.suite, CHAIN_ID, self.genesis.validators)
        self.checker.correct_validators = frozenset(self.correct_keys)
        self.now = 0
        self._queue: list[tuple[int, int, int, int, int, object]] = []
        self._seq = 0
        self._hash = hashlib.sha256()
        self._tail: deque[str] = deque(maxlen=max(cfg.trace_tail, 1))
        self.events = 0
        self.messages = 0
        self.delivered = 0
        self.healed = False
        self.heal_tick = cfg.chaos_ticks
        self.target = cfg.heights
        self.done_tick: int | None = None
        self.splits: dict[int, frozenset[int]] = {}
        self.split_values: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        """(height, round) → (block ID sent to the first half, to the other) of an equivocating proposal: the
        Byzantine voters back each half's value in that half (the attack that forks a chain at ≥ 1/3)."""
        self.fault_counts = dict.fromkeys(FAULTS, 0)
        self.fault_counts["drift"] = sum(1 for d in self.drift if d)
        self.peer_violations = 0
        self.txs_submitted = 0
        self.txs_accepted = 0
        self.commit_rounds: dict[int, int] = {}
        self.proposers: dict[int, bytes] = {}

    def _new_disk(self) -> Disk:
        t = self.genesis_tip
        return Disk(Ledger(ParentInfo(t.height, t.block_id, t.time_ms, t.state_root, t.receipts_root, t.validators),
                           values=dict(self.genesis_values)))

    def _choose_byzantine(self, rng: Rng, n: int) -> list[int]:
        k = self.cfg.byzantine
        if k == 0:
            return []
        total = sum(self.powers)
        for _ in range(64):
            chosen = sorted(rng.shuffled(list(range(n)))[:k])
            if self.cfg.allow_unsafe or 3 * sum(self.powers[i] for i in chosen) < total:
                return chosen
        light = sorted(sorted(range(n), key=lambda i: (self.powers[i], i))[:k])
        if 3 * sum(self.powers[i] for i in light) >= total:
            raise ValueError(f"{k} Byzantine validators hold ≥ 1/3 of the power {self.powers}; the model only "
                             f"promises safety below 1/3 (use allow_unsafe for a negative control)")
        return light

    # ------------------------------------------------------------------------------------------------ plumbing

    def _push(self, at: int, kind: int, node: int, epoch: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, node, epoch, payload))

    def push_call(self, node: SimNode, epoch: int, delay: int, callback: Callable[[], None], handle: _Timer) -> None:
        """A callback of one node incarnation (timer, finished execution, admission answer)."""
        self._push(self.now + max(delay, 0), _CALL, node.idx, epoch, (handle, callback))

    def _trace(self, line: str) -> None:
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self._tail.append(line)

    def drifted(self, node: SimNode, ticks: int) -> int:
        return 0 if ticks <= 0 else max(1, ticks * (1000 + self.drift[node.idx]) // 1000)

    def send(self, src: SimNode, dst: SimNode, msg: Wire) -> bool:
        """Put a message on the link src → dst (lost, duplicated or delayed by the seed)."""
        if self.cut[src.idx][dst.idx] or not dst.up:
            return False
        rng = self.rng_net
        if not self.healed and rng.chance(self.drop_permille):
            self.fault_counts["drop"] += 1
            return True
        copies = 2 if rng.chance(self.dup_permille) else 1
        self.fault_counts["dup"] += copies - 1
        for _ in range(copies):
            delay = self.base_delay[src.idx][dst.idx] + rng.below(26)
            if not self.healed and rng.chance(self.tail_permille):
                self.fault_counts["reorder"] += 1
                delay += rng.between(50, 800)
            self.messages += 1
            self._push(self.now + delay, _DELIVER, dst.idx, dst.epoch, (src.idx, msg))
        return True

    def to_core(self, m: ProposalMsg | SignedVote) -> Proposal | Vote:
        return compute_core_message(self.suite, m)

    # ------------------------------------------------------------------------------------------------ run

    def run(self) -> SimResult:
        """Run to completion: every correct node committed the target heights after the heal, or a bound hit."""
        self._schedule_faults()
        self._push(self.cfg.chaos_ticks, _HEAL, -1, 0, None)
        for node in self.nodes:
            if node.role != "silent":
                self._push(self.rng_fault.below(20), _RESTART, node.idx, 0, None)
        self._push(50, _CLIENT, -1, 0, None)
        deadline: int | None = None
        q = self._queue
        while q:
            at, _, kind, idx, epoch, payload = heapq.heappop(q)
            if deadline is not None and at > deadline:
                self.now = deadline
                self._liveness_failure()
                break
            self.now = self.checker.now = at
            self.events += 1
            if self.events > self.cfg.max_events:
                self.checker.violations.append(Violation("budget", at, -1, f"more than {self.cfg.max_events} "
                                                                           "events"))
                break
            if kind == _DELIVER:
                node = self.nodes[idx]
                if node.up and epoch == node.epoch:
                    assert isinstance(payload, tuple)
                    self._on_deliver(node, payload[0], payload[1])
            elif kind == _CALL:
                node = self.nodes[idx]
                assert isinstance(payload, tuple)
                handle, callback = payload
                if node.up and epoch == node.epoch and not handle.cancelled:
                    self._call(node, callback)
            elif kind == _FAULT:
                assert isinstance(payload, str)
                self._on_fault(payload)
            elif kind == _RESTART:
                node = self.nodes[idx]
                if not node.up and epoch == node.epoch:
                    self._start(node)
            elif kind == _CLIENT:
                self._on_client()
            else:
                self._on_heal()
                deadline = self.now + self.cfg.liveness_bound_ticks
            self._check_done()
            if self.done_tick is not None or self.checker.violations:
                break  # after a broken invariant the run proves nothing more; the trace tail ends at the break
        self._final_checks()
        return self._result()

    def _call(self, node: SimNode, fn: Callable[[], Any]) -> None:
        """Run shell code of one node; a crash plan firing inside it kills the node right there."""
        try:
            fn()
        except SimCrash as crash:
            self._crash(node, f"at {crash.args[0]} #{node.disk.ops}")
        except Exception as exc:  # a bug in the shell: report it with where it happened, stop the node
            where = "".join(traceback.format_exception_only(exc)).strip()
            self.checker.violations.append(Violation("exception", self.now, node.idx, where))
            self._crash(node, "exception")

    def _liveness_failure(self) -> None:
        behind = [f"node {n.idx} at height {n.height}" for n in self.nodes if n.is_correct and n.height <= self.target]
        self.checker.violations.append(Violation(
            "liveness", self.now, -1, f"no commit of height {self.target} within {self.cfg.liveness_bound_ticks} "
                                      f"ticks of the heal: {', '.join(behind)}"))

    def _check_done(self) -> None:
        if self.healed and self.done_tick is None and all(
                n.height > self.target for n in self.nodes if n.is_correct):
            self.done_tick = self.now

    # ------------------------------------------------------------------------------------------------ nodes

    def _start(self, node: SimNode) -> None:
        """Start (or restart) a node from its disk: fresh ports and a fresh shell; the shell replays its WAL."""
        if self.cfg.amnesia and node.epoch > 0:
            node.disk.wal.clear()
            node.disk.wal_synced = 0
            node.disk.signer = SignerState()
        node.up = True
        node.restarts += 1 if node.epoch > 0 else 0
        node.peer_heights = {}
        epoch = node.epoch
        disk = node.disk

        def later(delay: int, fn: Callable[[], None]) -> None:
            self.push_call(node, epoch, delay, fn, _Timer())

        ledger_cls = EarlyValsetLedger if node.idx in self.cfg.early_valsets else MemLedger
        ledger = ledger_cls(disk, self.rules, self.tree_nodes, later, lambda: 1 + self.rng_disk.below(12),
                            lambda b, c, h: self._on_stored(node, b, c, h))
        holder: list[Shell] = []
        pool = SimTxPool(self.rules, ledger, later, lambda raw, fc: holder[0].on_tx_admitted(raw, fc))
        ledger.pool = pool
        network = ByzantineNetwork(self, node) if node.role not in (CORRECT, "dup-key") else SimNetwork(self, node)

        class _Signer:
            address = node.address

            @staticmethod
            def sign(message: bytes) -> bytes:
                return self.suite.sign(node.private_key, message)

        shell = Shell(ledger=ledger, pool=pool, network=network, clock=SimClock(self, node), wal=MemWal(disk),
                      signer_store=MemSignerStore(disk), signer=_Signer(), timeouts=self.cfg.timeouts,
                      timing=SIM_TIMING, on_fatal=lambda reason: self._on_fatal(node, reason),
                      observer=_Observer(self, node))
        holder.append(shell)
        node.shell, node.pool = shell, pool
        self._trace(f"{self.now} R {node.idx} h{node.height} wal{len(disk.wal)}")
        if node.epoch > 0 and node.is_correct:
            self.checker.check_stored_chain(node.idx, disk.ledger)
        self._call(node, shell.start)
        if node.shell is not shell:
            return  # died while replaying
        if node.is_correct:
            self.checker.on_restart(node.idx, shell.consensus.core, node.lock_at_crash)
        for other in self.nodes:
            if other.idx != node.idx and other.up and other.shell is not None and other.address != node.address:
                self._call(node, functools.partial(shell.on_peer_up, other.address))
                self._call(other, functools.partial(other.shell.on_peer_up, node.address))

    def _crash(self, node: SimNode, why: str) -> None:
        if not node.up:
            return
        shell = node.shell
        if shell is not None:
            core = shell.consensus.core
            # A lock binds only once its precommit is signed: a core may lock (L36) and die before signing, and
            # then nothing of the lock ever left the node, nor needs to survive (its causes may be unsynced).
            signed = core.locked_round >= 0 and self.checker.has_signed(
                Vote(VoteType.PRECOMMIT, core.height, core.locked_round, core.locked_id, node.address))
            node.lock_at_crash = (core.height, core.locked_round) if signed else (-1, -1)
            for rule, count in core.rule_counts.items():
                node.rules[rule] = node.rules.get(rule, 0) + count
            node.synced += shell.blocksync.blocks_synced if shell.blocksync is not None else 0
            node.evidence += len(shell.consensus.evidence)
        node.up = False
        node.shell = None
        node.pool = None
        node.epoch += 1
        self._trace(f"{self.now} X crash {node.idx} h{node.height} {why}")
        if not self.healed:
            self._push(self.now + self.rng_fault.between(200, 4000), _RESTART, node.idx, node.epoch, None)
        else:
            self._push(self.now + 50, _RESTART, node.idx, node.epoch, None)

    def _on_fatal(self, node: SimNode, reason: str) -> None:
        if node.is_correct:
            self.checker.violations.append(Violation("divergence", self.now, node.idx, reason))

    def on_peer_violation(self, node: SimNode, address: bytes | None, reason: str) -> None:
        """A node cut a peer off for bad input: a correct peer never deserves it."""
        self.peer_violations += 1
        if address is not None and address in self.correct_keys and node.is_correct:
            self.checker.violations.append(Violation("peer-violation", self.now, node.idx,
                                                     f"correct peer {address.hex()[:8]} reported: {reason}"))

    def _on_stored(self, node: SimNode, block: Block, commit: Commit, hashes: list[bytes]) -> None:
        h = block.header.height
        self._trace(f"{self.now} D {node.idx} h{h}.{commit.round}.{commit.block_id.hex()[:6]}")
        if not node.is_correct:
            return
        self.checker.on_store(node.idx, block, commit, hashes)
        self.commit_rounds.setdefault(h, commit.round)
        self.proposers.setdefault(h, block.header.proposer)

    # ------------------------------------------------------------------------------------------------ events

    def _on_deliver(self, node: SimNode, src: int, msg: Wire) -> None:
        shell = node.shell
        if shell is None or node.role == "silent":
            return
        self.delivered += 1
        self._trace(f"{self.now} {node.idx}<{src} {describe(msg)}")
        sender = self.nodes[src].address

        def handle() -> None:
            try:
                shell.on_message(sender, msg)
            except PeerViolation as exc:
                self.on_peer_violation(node, sender, str(exc))

        self._call(node, handle)

    def _on_client(self) -> None:
        """A client submits a real signed transaction (kv.put) to a running correct node, every ~150 ticks."""
        self._push(self.now + self.rng_app.between(50, 250), _CLIENT, -1, 0, None)
        up = [n for n in self.nodes if n.is_correct and n.up and n.pool is not None]
        if not up:
            return
        if self.gov_next < len(self.gov_plan):
            self._on_governance(up)
        node = up[self.rng_app.below(len(up))]
        self.txs_submitted += 1
        body = TxBody(CHAIN_ID, self.suite.get_public_key(self.client_key), self.txs_submitted,
                      node.disk.ledger.tip.height + 500, "kv", "put",
                      (b"k%d" % self.rng_app.below(64), b"v%d" % self.txs_submitted))
        raw = sign_tx(self.suite, self.client_key, body).encode()
        pool = node.pool
        assert pool is not None
        result: list[str] = []
        self._call(node, lambda: result.append(pool.submit(raw, True)[1]))
        if result and result[0] == "accepted":
            self.txs_accepted += 1
        self._trace(f"{self.now} {node.idx} tx{self.txs_submitted} {result[0] if result else 'crash'}")

    def _on_governance(self, up: list[SimNode]) -> None:
        """The client (the organisation's admin) proposes the next validator-set change of the plan — a real
        ``gov.propose`` of ``validator.update``, executed at once (a majority of one) — and re-sends the same signed
        bytes until a correct node stores it (a crash may lose it from a mempool). The oracle is told what it
        changes; it applies the change from two heights after the block that carries it."""
        if self.gov_raw is not None:
            at = self.checker.acked.get(self.gov_hash)
            if at is not None:
                self._trace(f"{self.now} G change {self.gov_next} stored at h{at}")
                self.gov_next += 1
                self.gov_raw = None
                self.gov_after = at + 3
                return
            if self.now - self.gov_sent_at < 1500:
                return
        elif max(self.checker.stored, default=0) < self.gov_after:
            return
        node = up[self.rng_app.below(len(up))]
        if self.gov_raw is None:
            updates = self.gov_plan[self.gov_next]
            action = ["validator.update", [[pub, power] for _, pub, power in updates]]
            body = TxBody(CHAIN_ID, self.suite.get_public_key(self.client_key), 1_000_000 + self.gov_next,
                          node.disk.ledger.tip.height + 500, "gov", "propose", (action,))
            tx = sign_tx(self.suite, self.client_key, body)
            self.gov_raw = tx.encode()
            self.gov_hash = compute_tx_hash(self.suite, body)
            self.checker.expect_validator_update(self.gov_hash, updates)
        self.gov_sent_at = self.now
        raw, pool = self.gov_raw, node.pool
        assert pool is not None
        result: list[str] = []
        self._call(node, lambda: result.append(pool.submit(raw, True)[1]))
        self._trace(f"{self.now} {node.idx} G change {self.gov_next} {result[0] if result else 'crash'}")

    # ------------------------------------------------------------------------------------------------ faults

    def _schedule_faults(self) -> None:
        cfg = self.cfg
        if cfg.crash_every:
            t = 0
            while True:
                t += self.rng_fault.between(100, max(cfg.crash_every, 100))
                if t >= cfg.chaos_ticks:
                    break
                self._push(t, _FAULT, -1, 0, "torn" if self.rng_fault.chance(500) else "crash")
        kinds = [k for k in ("partition", "asym", "isolate", "crash", "torn") if k in cfg.faults]
        if not kinds:
            return
        partitions = [k for k in kinds if k in ("partition", "asym", "isolate")]
        t = 0
        while True:
            t += self.rng_fault.between(200, 1500)
            if t >= cfg.chaos_ticks:
                return
            action = self.rng_fault.pick(list(range(len(kinds) + (1 if partitions else 0))))
            name = kinds[action] if action < len(kinds) else "heal-partitions"
            self._push(t, _FAULT, -1, 0, name)

    def _on_fault(self, name: str) -> None:
        rng = self.rng_fault
        m = len(self.nodes)
        if name in ("partition", "asym", "isolate", "heal-partitions"):
            self.cut = [[False] * m for _ in range(m)]
            if name == "heal-partitions" or m < 2:
                self._trace(f"{self.now} F heal-partitions")
                return
            if name == "isolate":
                group = {rng.below(m)}
            else:
                order = rng.shuffled(list(range(m)))
                group = set(order[:rng.between(1, m - 1)])
            for a in range(m):
                for b in range(m):
                    if (a in group) != (b in group) and (name != "asym" or a in group):
                        self.cut[a][b] = True
            self._trace(f"{self.now} F {name} {sorted(group)}")
            self.fault_counts[name] += 1
            return
        candidates = [n.idx for n in self.nodes if n.role in (CORRECT, "dup-key") and n.up
                      and n.disk.crash_at is None]
        if not candidates:
            return
        node = self.nodes[rng.pick(candidates)]
        disk = node.disk
        disk.crash_at = disk.ops + rng.between(1, 40)
        disk.power_loss = name == "torn"
        disk.tear = rng.below(1001)
        self.fault_counts[name] += 1
        self._trace(f"{self.now} F {name} {node.idx} at op {disk.crash_at}")

    def _on_heal(self) -> None:
        m = len(self.nodes)
        self.cut = [[False] * m for _ in range(m)]
        self.healed = True
        self.heal_tick = self.now
        best = max((n.height - 1 for n in self.nodes if n.is_correct), default=0)
        self.target = max(self.cfg.heights, best + 1)
        self._trace(f"{self.now} F heal target {self.target}")
        for node in self.nodes:
            node.disk.crash_at = None
            if node.role != "silent" and not node.up:
                self._start(node)

    # ------------------------------------------------------------------------------------------------ Byzantine

    def _split(self, height: int) -> frozenset[int]:
        """The half of the nodes that gets the Byzantine nodes' first version at `height`."""
        got = self.splits.get(height)
        if got is None:
            order = self.rng_byz.shuffled([n.idx for n in self.nodes if n.role != "silent"])
            got = frozenset(order[:len(order) // 2])
            self.splits[height] = got
        return got

    def _sign_vote(self, node: SimNode, kind: int, height: int, round_: int, block_id: bytes) -> SignedVote:
        sig = self.suite.sign(node.private_key, compute_vote_sign_bytes(CHAIN_ID, kind, height, round_, block_id))
        vote = SignedVote(kind, height, round_, block_id, node.address, sig)
        self.checker.on_sign(node.idx, self.to_core(vote), False, vote)
        return vote

    def byzantine_send(self, node: SimNode, msg: ProposalMsg | SignedVote) -> None:
        """Send an own message of a Byzantine validator the way its behaviour does."""
        alt: ProposalMsg | SignedVote | None = None
        if node.role == "equivocate" and isinstance(msg, ProposalMsg):
            h = msg.header
            bad = self.rng_byz.below(4) == 0  # one time in four the second block is invalid (wrong parent)
            header = dataclasses.replace(h, time_ms=h.time_ms + 1 + self.rng_byz.below(1000),
                                         prev_block_id=bytes(32) if bad else h.prev_block_id)
            bid = self.suite.hash(header.encode())
            sig = self.suite.sign(node.private_key, compute_proposal_sign_bytes(CHAIN_ID, h.height, msg.round, bid,
                                                                                msg.valid_round))
            alt = ProposalMsg(msg.round, msg.valid_round, header, msg.signed_hashes, msg.last_commit, msg.evidence,
                              msg.proposer, sig)
            self.checker.on_sign(node.idx, self.to_core(alt), False, alt)
            self.split_values[(h.height, msg.round)] = (self.suite.hash(h.encode()), bid)
        elif node.role in ("equivocate", "double-vote") and isinstance(msg, SignedVote):
            pair = self.split_values.get((msg.height, msg.round))
            if pair is not None:  # back each half's proposal in that half
                if msg.block_id != pair[0]:
                    msg = self._sign_vote(node, msg.kind, msg.height, msg.round, pair[0])
                alt = self._sign_vote(node, msg.kind, msg.height, msg.round, pair[1])
            elif node.role == "double-vote":
                alt = self._sign_vote(node, msg.kind, msg.height, msg.round, b"" if msg.block_id else bytes(32))
        if alt is None:
            for other in self.nodes:
                if other.idx != node.idx:
                    self.send(node, other, msg)
        else:
            half = self._split(msg.height if isinstance(msg, SignedVote) else msg.header.height)
            for other in self.nodes:
                if other.idx != node.idx:
                    self.send(node, other, msg if other.idx in half else alt)
        if node.role == "spam":
            self._spam(node, msg)

    def _spam(self, node: SimNode, msg: ProposalMsg | SignedVote) -> None:
        """Votes for near-future rounds (inside the window), far-future rounds (beyond it) and future heights."""
        rng = self.rng_byz
        height0 = msg.height if isinstance(msg, SignedVote) else msg.header.height
        round0 = msg.round
        for _ in range(2):
            height = height0 + (rng.below(3) if rng.chance(250) else 0)
            far = rng.chance(300)
            rnd = round0 + (rng.between(11, 1_000_000) if far else rng.between(1, 10))
            kind = PREVOTE if rng.chance(500) else PRECOMMIT
            vote = self._sign_vote(node, kind, height, rnd, b"")
            for other in self.nodes:
                if other.idx != node.idx:
                    self.send(node, other, vote)

    # ------------------------------------------------------------------------------------------------ result

    def _final_checks(self) -> None:
        for n in self.nodes:
            if n.is_correct:
                self.checker.check_acks(n.idx, n.disk.ledger)

    def _result(self) -> SimResult:
        correct = [n for n in self.nodes if n.is_correct]
        rules: dict[str, int] = {}
        synced = 0
        evidence = 0
        for n in correct:
            counts = dict(n.rules)
            synced += n.synced
            evidence += n.evidence
            if n.shell is not None:
                for rule, c in n.shell.consensus.core.rule_counts.items():
                    counts[rule] = counts.get(rule, 0) + c
                synced += n.shell.blocksync.blocks_synced if n.shell.blocksync is not None else 0
                evidence += len(n.shell.consensus.evidence)
            for rule, c in counts.items():
                rules[rule] = rules.get(rule, 0) + c
        proposers = [p for _, p in sorted(self.proposers.items())]
        probes = {
            "decisions in round > 0": sum(1 for r in self.commit_rounds.values() if r > 0),
            "L28 unlocks": rules.get("L28-unlock", 0),
            "L55 round skips": rules.get("L55", 0),
            "L49 past-round decisions": rules.get("L49-past-round", 0),
            "proposer rotations": sum(1 for a, b in itertools.pairwise(proposers) if a != b),
            "catch-up commits": synced,
            "restarts": sum(n.restarts for n in self.nodes),
            "evidence": evidence,
            "evidence committed": len(self.checker.evidence_committed),
            "crash points": sum(n.disk.crash_points for n in self.nodes),
            "txs acknowledged": len(self.checker.acked),
            "peer violations": self.peer_violations,
            "validator-set changes": len(self.checker.decided_updates),
        }
        heights = min((n.height - 1 for n in correct), default=0)
        live = None if self.done_tick is None else self.done_tick - self.heal_tick
        faults = dict(self.fault_counts)
        faults["crash points"] = probes["crash points"]
        return SimResult(
            config=self.cfg, trace_hash=self._hash.hexdigest(), violations=tuple(self.checker.violations),
            heights=heights, max_round=max(self.commit_rounds.values(), default=0), messages=self.messages,
            delivered=self.delivered, events=self.events, ticks=self.now, heal_tick=self.heal_tick,
            liveness_ticks=live, probes=probes, faults=faults, roles=tuple(n.role for n in self.nodes),
            powers=self.powers, trace_tail=tuple(self._tail))


def run_simulation(cfg: SimConfig) -> SimResult:
    """Run one seed."""
    return World(cfg).run()
