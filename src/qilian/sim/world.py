"""The deterministic discrete-event simulator: N real consensus cores, a fake clock, a hostile network, crashes and
Byzantine validators — everything drawn from one seed.

Why a simulator: a consensus bug shows up only under one interleaving in millions. Here every interleaving is a
seed, so a failure is replayable exactly (`qilian sim --seed S ...`), and the same seed always gives the same trace
hash (every processed event is hashed in order; nothing depends on wall time, `hash()` order or floats).

Model, in short (docs/spec/consensus.md, "Simulator"):
- time is an integer tick (1 ms); each node's timers run at its own rate (drift, per mille);
- the network delivers each message after a per-link base delay plus jitter (and, with `reorder`, a heavy tail);
  it can drop, duplicate and partition (symmetric, asymmetric, isolate-one), all healed at the end of the chaos phase;
- a message is "signed" when its key holder makes it (`Checker.signed`); receivers accept only signed messages, which
  is what signature verification gives a real node — no node can forge another validator's vote;
- a correct node's shell does what the real node must: log each input to a WAL, sync the WAL and persist the signer
  guard state before any own message leaves, commit a decided block durably, replay the WAL into a fresh core on
  restart and re-send its own messages (never re-signing anything but through the guard). A crash loses the core,
  the unsynced WAL tail, timers and in-flight work;
- a node that makes no progress re-sends what it holds (anti-entropy, the model of gossip) and a node that is
  behind fetches commit certificates from a peer (block sync), verified before use."""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

from qilian.consensus import (
    Broadcast,
    Core,
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
    SignerState,
    SignRefused,
    TimeoutElapsed,
    ValidateValue,
    ValidatorSet,
    ValidityAnswer,
    Vote,
    VoteType,
    check_sign,
    compute_value_id,
)
from qilian.sim.app import GENESIS_ID, is_valid_value, make_value, parse_value
from qilian.sim.checkers import Checker, Violation
from qilian.sim.config import FAULTS, SimConfig
from qilian.sim.rng import Rng

MAX_HELD_PER_HEIGHT = 400
"""Messages of one height a node keeps for anti-entropy; further ones are not relayed."""
MAX_GOSSIP_BATCH = 200
"""Messages sent to one peer in one anti-entropy round."""
MAX_COMMITS_PER_REPLY = 8
"""Commit certificates sent in one block-sync reply."""
MAX_OWN_RESEND = 6
"""Own messages re-sent to everyone in one anti-entropy round."""

CORRECT = "correct"

# event kinds (ordering inside one tick is by insertion sequence, so this value never decides anything)
_DELIVER, _TIMER, _APP, _GOSSIP, _FAULT, _RESTART, _HEAL = range(7)


@dataclass(frozen=True, slots=True)
class CommitCert:
    """A decided value with the precommits that decided it (what block sync carries)."""

    height: int
    """Height decided."""
    round: int
    """Round of the precommits."""
    value: bytes
    """The value."""
    precommits: tuple[Vote, ...]
    """More than 2/3 of the power precommitted id(value) in `round`."""


@dataclass(frozen=True, slots=True)
class CommitBundle:
    """Block-sync reply: consecutive commit certificates."""

    commits: tuple[CommitCert, ...]
    """In height order."""


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Block-sync request: "I am at `height`; send me what you decided from there"."""

    height: int
    """The requester's current height."""


Message = Proposal | Vote | CommitBundle | SyncRequest


@dataclass(frozen=True, slots=True)
class WalStart:
    """First WAL record of a height: the next-height messages the core had buffered when the height started, which
    `start_height` replays — without them a replay would not reproduce the same state."""

    height: int
    """The height."""
    buffered: tuple[Input, ...]
    """Inputs the core replays inside `start_height`."""


@dataclass(slots=True)
class Disk:
    """What a node keeps across a crash."""

    chain: list[CommitCert] = field(default_factory=list)
    """Committed heights 1, 2, ...: durable the moment they are committed."""
    signer: SignerState = field(default_factory=SignerState)
    """Signer guard state: persisted before every signature."""
    wal: list[WalStart | Input] = field(default_factory=list)
    """Inputs of the current height, a `WalStart` first."""
    synced: int = 0
    """Length of the WAL prefix that is on disk; the rest dies in a crash."""
    own: dict[Proposal | Vote, None] = field(default_factory=dict)
    """Own signed messages of the current height (stored with the signer state) for re-sending after a restart."""


@dataclass(slots=True)
class SimNode:
    """One simulated process."""

    idx: int
    key: bytes
    role: str
    """`correct`, or a Byzantine behaviour."""
    disk: Disk = field(default_factory=Disk)
    up: bool = True
    epoch: int = 0
    """Incarnation: events of an earlier incarnation are ignored."""
    core: Core | None = None
    held: dict[int, dict[Message, None]] = field(default_factory=dict)
    seen: set[Message] = field(default_factory=set)
    last_commit_tick: int = 0
    rules: dict[str, int] = field(default_factory=dict)
    """Rule counts of earlier incarnations (the core's own counts die with it)."""
    lock_at_crash: tuple[int, int] = (-1, -1)
    torn_pending: bool = False
    sync_sent: dict[int, int] = field(default_factory=dict)
    """peer → tick of the last SyncRequest sent to it."""
    reply_sent: dict[tuple[int, int], int] = field(default_factory=dict)
    """(peer, height) → tick of the last block-sync reply."""
    evidence: int = 0
    restarts: int = 0
    decided_rounds: list[int] = field(default_factory=list)
    """Round of each decision its core made (catch-up commits excluded)."""

    @property
    def is_correct(self) -> bool:
        """Counts for agreement, liveness and double signing."""
        return self.role == CORRECT

    @property
    def has_shell(self) -> bool:
        """Runs the correct node shell (WAL, guard): correct nodes and both copies of a duplicated key."""
        return self.role in (CORRECT, "dup-key")

    @property
    def height(self) -> int:
        """Next height to decide."""
        return len(self.disk.chain) + 1

    def get_tip_id(self) -> bytes:
        """id of the last committed value."""
        return compute_value_id(self.disk.chain[-1].value) if self.disk.chain else GENESIS_ID


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
    """Highest round any correct core decided in."""
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
    """How often each fault kind acted (messages dropped, duplicated, delayed by the tail; partitions; crashes;
    torn crashes; nodes with drifting clocks)."""
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


def compute_validator_address(i: int) -> bytes:
    """Address of simulated validator i (20 bytes, readable in traces)."""
    return (b"val-%02d" % i).ljust(20, b"\0")


def _input_of(m: Proposal | Vote) -> Input:
    if isinstance(m, Proposal):
        return ProposalReceived(m)
    return PrevoteReceived(m) if m.type == VoteType.PREVOTE else PrecommitReceived(m)


def describe(m: Message) -> str:
    """Short stable text of a message for the trace."""
    if isinstance(m, Proposal):
        return f"P{m.height}.{m.round}.{m.value_id.hex()[:6]}.{m.valid_round}"
    if isinstance(m, Vote):
        vid = "nil" if m.value_id is None else m.value_id.hex()[:6]
        return f"{'V' if m.type == VoteType.PREVOTE else 'C'}{m.height}.{m.round}.{vid}.{m.validator[4:6].decode()}"
    if isinstance(m, CommitBundle):
        return "B" + ",".join(str(c.height) for c in m.commits)
    return f"S{m.height}"


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
        self.rng_gossip = root.fork("gossip")
        n = cfg.nodes
        keys = [compute_validator_address(i) for i in range(n)]
        self.powers = tuple(setup.between(1, 10) for _ in range(n)) if cfg.weighted else (1,) * n
        self.validators = ValidatorSet(dict(zip(keys, self.powers, strict=True)))
        byz = self._choose_byzantine(setup, n)
        self.nodes: list[SimNode] = []
        for i, key in enumerate(keys):
            role = self.rng_byz.pick(list(range(len(cfg.behaviours)))) if i in byz else -1
            name = CORRECT if role < 0 else cfg.behaviours[role]
            self.nodes.append(SimNode(len(self.nodes), key, name))
            if name == "dup-key":
                self.nodes.append(SimNode(len(self.nodes), key, name))
        m = len(self.nodes)
        self.base_delay = [[setup.between(2, 25) for _ in range(m)] for _ in range(m)]
        self.drift = [setup.between(-50, 50) if "drift" in cfg.faults else 0 for _ in range(m)]
        self.drop_permille = setup.between(10, 150) if "drop" in cfg.faults else 0
        self.dup_permille = setup.between(10, 100) if "dup" in cfg.faults else 0
        self.tail_permille = 30 if "reorder" in cfg.faults else 0
        self.cut = [[False] * m for _ in range(m)]
        self.checker = Checker(self.validators, compute_value_id)
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
        """(height, round) → (value id sent to the first half, to the other) of an equivocating proposal: the
        Byzantine voters back each half's value in that half (the attack that forks a chain when they hold ≥ 1/3)."""
        self.catchups = 0
        self.fault_counts = dict.fromkeys(FAULTS, 0)
        self.fault_counts["drift"] = sum(1 for d in self.drift if d)

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

    def _trace(self, line: str) -> None:
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self._tail.append(line)

    def _drifted(self, node: SimNode, ticks: int) -> int:
        return max(1, ticks * (1000 + self.drift[node.idx]) // 1000)

    def _send(self, src: int, dst: int, msg: Message) -> None:
        if src == dst or self.cut[src][dst]:
            return
        rng = self.rng_net
        if not self.healed and rng.chance(self.drop_permille):
            self.fault_counts["drop"] += 1
            return
        copies = 2 if rng.chance(self.dup_permille) else 1
        self.fault_counts["dup"] += copies - 1
        for _ in range(copies):
            delay = self.base_delay[src][dst] + rng.below(26)
            if not self.healed and rng.chance(self.tail_permille):
                self.fault_counts["reorder"] += 1
                delay += rng.between(50, 800)
            self.messages += 1
            self._push(self.now + delay, _DELIVER, dst, src, msg)

    def _send_all(self, node: SimNode, msg: Message) -> None:
        for other in self.nodes:
            self._send(node.idx, other.idx, msg)

    # ------------------------------------------------------------------------------------------------ run

    def run(self) -> SimResult:
        """Run to completion: every correct node committed the target heights after the heal, or a bound hit."""
        self._schedule_faults()
        self._push(self.cfg.chaos_ticks, _HEAL, -1, 0, None)
        for node in self.nodes:
            if node.role != "silent":
                self._push(self.rng_fault.below(20), _RESTART, node.idx, 0, None)
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
                assert isinstance(payload, Proposal | Vote | CommitBundle | SyncRequest)
                self._on_deliver(self.nodes[idx], epoch, payload)
            elif kind == _TIMER:
                assert isinstance(payload, TimeoutElapsed)
                self._on_timer(self.nodes[idx], epoch, payload)
            elif kind == _APP:
                assert isinstance(payload, ProposalValueReady | ValidityAnswer)
                self._on_app(self.nodes[idx], epoch, payload)
            elif kind == _GOSSIP:
                self._on_gossip(self.nodes[idx], epoch)
            elif kind == _FAULT:
                assert isinstance(payload, str)
                self._on_fault(payload)
            elif kind == _RESTART:
                node = self.nodes[idx]
                if not node.up or node.core is None:
                    if epoch == node.epoch:
                        self._restart(node)
            else:
                self._on_heal()
                deadline = self.now + self.cfg.liveness_bound_ticks
            if self.done_tick is not None or self.checker.violations:
                break  # after a broken invariant the run proves nothing more; the trace tail ends at the break
        return self._result()

    def _liveness_failure(self) -> None:
        behind = [f"node {n.idx} at height {n.height}" for n in self.nodes if n.is_correct and n.height <= self.target]
        self.checker.violations.append(Violation(
            "liveness", self.now, -1, f"no commit of height {self.target} within {self.cfg.liveness_bound_ticks} "
                                      f"ticks of the heal: {', '.join(behind)}"))

    # ------------------------------------------------------------------------------------------------ faults

    def _schedule_faults(self) -> None:
        cfg = self.cfg
        kinds = [k for k in ("partition", "asym", "isolate", "crash", "torn") if k in cfg.faults]
        if not kinds:
            return
        partitions = [k for k in kinds if k in ("partition", "asym", "isolate")]
        t = 0
        while True:
            t += self.rng_fault.between(300, 2500)
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
        candidates = [n.idx for n in self.nodes if n.has_shell and n.up and n.core is not None]
        if not candidates:
            return
        node = self.nodes[rng.pick(candidates)]
        if name == "torn":
            node.torn_pending = True
            self._trace(f"{self.now} F torn {node.idx}")
        else:
            self.fault_counts["crash"] += 1
            self._crash(node)
        self._push(self.now + rng.between(200, 4000), _RESTART, node.idx, node.epoch + (1 if name == "torn" else 0),
                   None)

    def _on_heal(self) -> None:
        m = len(self.nodes)
        self.cut = [[False] * m for _ in range(m)]
        self.healed = True
        self.heal_tick = self.now
        best = max((n.height - 1 for n in self.nodes if n.is_correct), default=0)
        self.target = max(self.cfg.heights, best + 1)
        self._trace(f"{self.now} F heal target {self.target}")
        for node in self.nodes:
            node.torn_pending = False
            if node.role != "silent" and (not node.up or node.core is None):
                self._restart(node)
        self._check_done()

    def _crash(self, node: SimNode) -> None:
        if not node.up or node.core is None:
            return
        core = node.core
        node.lock_at_crash = (core.height, core.locked_round)
        for rule, count in core.rule_counts.items():
            node.rules[rule] = node.rules.get(rule, 0) + count
        node.up = False
        node.core = None
        node.epoch += 1
        node.held = {}
        node.seen = set()
        node.torn_pending = False
        disk = node.disk
        del disk.wal[disk.synced:]
        if self.cfg.amnesia:
            disk.wal, disk.synced, disk.signer, disk.own = [], 0, SignerState(), {}
        self._trace(f"{self.now} X crash {node.idx} h{node.height}")

    # ------------------------------------------------------------------------------------------------ restart

    def _restart(self, node: SimNode) -> None:
        """Start (or restart) a node from its disk: replay the synced WAL into a fresh core."""
        node.up = True
        node.restarts += 1 if node.epoch > 0 else 0
        node.torn_pending = False
        core = Core(node.key, self.validators, self.cfg.timeouts)
        node.core = core
        node.held, node.seen = {}, set()
        node.last_commit_tick = self.now
        disk = node.disk
        height = node.height
        records = disk.wal[:disk.synced] if node.has_shell else []
        first = records[0] if records else None
        if not (isinstance(first, WalStart) and first.height == height):
            first = WalStart(height, ())
            records = [first]
            if node.has_shell:
                disk.wal, disk.synced = [first], 0
        self._trace(f"{self.now} R {node.idx} h{height} wal{len(records) - 1}")
        timers: dict[int, ScheduleTimeout] = {}
        request: RequestValue | None = None
        validate: dict[bytes, ValidateValue] = {}
        decided: Decide | None = None

        def absorb(outs: list[Output]) -> None:
            nonlocal request, decided
            for o in outs:
                if isinstance(o, Broadcast):
                    if o.message not in disk.own:  # signed before the crash? then it is re-sent below
                        self._sign_and_send(node, o.message)
                elif isinstance(o, ScheduleTimeout):
                    timers[o.kind] = o
                elif isinstance(o, RequestValue):
                    request = o
                elif isinstance(o, ValidateValue):
                    validate[o.value_id] = o
                elif isinstance(o, Decide):
                    decided = o

        core.buffer = list(first.buffered)
        for buffered in first.buffered:
            if isinstance(buffered, ProposalReceived | PrevoteReceived | PrecommitReceived):
                self._hold(node, buffered.proposal if isinstance(buffered, ProposalReceived) else buffered.vote)
        absorb(core.start_height(height, self.validators))
        for inp in records[1:]:
            assert not isinstance(inp, WalStart)
            if isinstance(inp, ProposalValueReady):
                request = None
            elif isinstance(inp, ValidityAnswer):
                validate.pop(inp.value_id, None)
            elif isinstance(inp, ProposalReceived):
                self._hold(node, inp.proposal)
            elif isinstance(inp, PrevoteReceived | PrecommitReceived):
                self._hold(node, inp.vote)
            absorb(core.process(inp))
            if decided is not None:
                break
        self._push(self.now + self._drifted(node, self.cfg.gossip_ticks), _GOSSIP, node.idx, node.epoch, None)
        if decided is not None:  # a crash between the WAL sync and the commit (torn): decide again, commit now
            self._execute(node, [decided])
            return
        if node.has_shell:
            self.checker.on_core_step(node.idx, core, [], (core.locked_round, core.locked_id))
            if node.is_correct:
                self.checker.on_restart(node.idx, core, node.lock_at_crash)
        for t in timers.values():
            if (t.height, t.round) == (core.height, core.round):
                self._execute(node, [t])
        pending: list[Output] = list(validate.values())
        if request is not None and (request.height, request.round) == (core.height, core.round):
            pending.append(request)
        self._execute(node, pending)
        for msg in list(disk.own)[-MAX_OWN_RESEND:]:
            self._send_all(node, msg)

    # ------------------------------------------------------------------------------------------------ node IO

    def _hold(self, node: SimNode, msg: Proposal | Vote) -> None:
        node.seen.add(msg)
        held = node.held.setdefault(msg.height, {})
        if len(held) < MAX_HELD_PER_HEIGHT:
            held[msg] = None

    def _feed(self, node: SimNode, inp: Input) -> None:
        """Log an input (correct shells), give it to the core, carry out the effects."""
        core = node.core
        assert core is not None
        if node.has_shell:
            node.disk.wal.append(inp)
        lock = (core.locked_round, core.locked_id)
        outs = core.process(inp)
        self._execute(node, outs, lock)

    def _execute(self, node: SimNode, outs: list[Output], lock: tuple[int, bytes | None] | None = None) -> None:
        core = node.core
        assert core is not None
        own = [o.message for o in outs if isinstance(o, Broadcast)]
        if node.has_shell:
            if own:
                node.disk.synced = len(node.disk.wal)  # WAL before send
            if lock is not None:
                self.checker.on_core_step(node.idx, core, own, lock)
        epoch = node.epoch
        for o in outs:
            if node.epoch != epoch:  # crashed in the middle of this step (torn)
                return
            if isinstance(o, Broadcast):
                if node.has_shell:
                    self._sign_and_send(node, o.message)
                else:
                    self._byzantine_send(node, o.message)
            elif isinstance(o, ScheduleTimeout):
                self._push(self.now + self._drifted(node, o.duration_ms), _TIMER, node.idx, node.epoch,
                           TimeoutElapsed(o.kind, o.height, o.round))
            elif isinstance(o, RequestValue):
                value = make_value(o.height, node.get_tip_id(), node.idx, self.rng_app.below(1 << 32))
                self._push(self.now + self.rng_app.below(31), _APP, node.idx, node.epoch,
                           ProposalValueReady(o.height, o.round, value))
            elif isinstance(o, ValidateValue):
                valid = is_valid_value(o.value, o.height, node.get_tip_id()) and o.height == node.height
                self._push(self.now + self.rng_app.below(21), _APP, node.idx, node.epoch,
                           ValidityAnswer(o.value_id, valid))
            elif isinstance(o, Decide):
                self._trace(f"{self.now} {node.idx} D{o.height}.{o.round}.{compute_value_id(o.value).hex()[:6]}")
                if node.is_correct:
                    self.checker.on_decide(node.idx, o.height, o.round, o.value, o.precommits, "core")
                    node.decided_rounds.append(o.round)
                self._commit(node, CommitCert(o.height, o.round, o.value, o.precommits))
                return
            elif isinstance(o, EvidenceFound):
                node.evidence += 1

    def _sign_and_send(self, node: SimNode, msg: Proposal | Vote) -> None:
        """Signer guard (persisted first), sign, send. An own message already signed is only re-sent."""
        disk = node.disk
        if msg not in disk.own:
            try:
                state = check_sign(disk.signer, msg)
            except SignRefused as exc:
                if node.is_correct:
                    self.checker.on_guard_refused(node.idx, msg, str(exc))
                return
            disk.signer = state
            disk.own[msg] = None
            self.checker.on_sign(node.idx, msg, node.is_correct)
            if node.torn_pending:
                self.fault_counts["torn"] += 1
                self._crash(node)
                return
        self._hold(node, msg)
        self._send_all(node, msg)

    def _commit(self, node: SimNode, cert: CommitCert) -> None:
        """Make the decision durable, start a fresh WAL for the next height, start the next height."""
        core = node.core
        assert core is not None and cert.height == node.height
        disk = node.disk
        disk.chain.append(cert)
        buffered = tuple(core.buffer)
        disk.wal, disk.synced, disk.own = [WalStart(cert.height + 1, buffered)], 0, {}
        for rule, count in core.rule_counts.items():
            node.rules[rule] = node.rules.get(rule, 0) + count
        core.rule_counts = {}
        node.last_commit_tick = self.now
        node.held = {h: msgs for h, msgs in node.held.items() if h > cert.height}
        node.seen = {m for msgs in node.held.values() for m in msgs}
        self._check_done()
        outs = core.start_height(cert.height + 1, self.validators)
        self._execute(node, outs, (-1, None))

    def _check_done(self) -> None:
        if self.healed and self.done_tick is None and all(
                n.height > self.target for n in self.nodes if n.is_correct):
            self.done_tick = self.now

    # ------------------------------------------------------------------------------------------------ events

    def _on_deliver(self, node: SimNode, src: int, msg: Message) -> None:
        if not node.up or node.core is None or node.role == "silent":
            return
        self.delivered += 1
        self._trace(f"{self.now} {node.idx}<{src} {describe(msg)}")
        core = node.core
        if isinstance(msg, SyncRequest):
            self._reply_sync(node, src, msg.height)
            return
        if isinstance(msg, CommitBundle):
            self._on_commits(node, msg)
            return
        if msg not in self.checker.signed:  # forged: a real node's signature check rejects it
            return
        if msg.height < core.height:
            self._reply_sync(node, src, msg.height)
            return
        if msg.height > core.height:
            self._request_sync(node, src)
            if msg.height > core.height + 1:
                return
        if msg in node.seen:
            return
        self._hold(node, msg)
        self._feed(node, _input_of(msg))

    def _on_timer(self, node: SimNode, epoch: int, t: TimeoutElapsed) -> None:
        core = node.core
        if epoch != node.epoch or core is None or (t.height, t.round) != (core.height, core.round):
            return
        self._trace(f"{self.now} {node.idx} T{int(t.kind)}.{t.height}.{t.round}")
        self._feed(node, t)

    def _on_app(self, node: SimNode, epoch: int, inp: ProposalValueReady | ValidityAnswer) -> None:
        core = node.core
        if epoch != node.epoch or core is None:
            return
        if isinstance(inp, ProposalValueReady) and (inp.height, inp.round) != (core.height, core.round):
            return
        self._trace(f"{self.now} {node.idx} A{type(inp).__name__[0]}")
        self._feed(node, inp)

    def _on_gossip(self, node: SimNode, epoch: int) -> None:
        """Anti-entropy: a node that has not committed for a while re-sends its own latest messages to everyone and
        everything it holds for its height to one random peer, and asks that peer for commits it may lack."""
        core = node.core
        if epoch != node.epoch or core is None:
            return
        self._push(self.now + self._drifted(node, self.cfg.gossip_ticks), _GOSSIP, node.idx, node.epoch, None)
        if self.now - node.last_commit_tick < self.cfg.gossip_ticks or len(self.nodes) < 2:
            return
        peers = [n.idx for n in self.nodes if n.idx != node.idx]
        peer = self.rng_gossip.pick(peers)
        self._trace(f"{self.now} {node.idx} G{peer}")
        if node.has_shell:
            for own in list(node.disk.own)[-MAX_OWN_RESEND:]:
                self._send_all(node, own)
        for msg in list(node.held.get(core.height, {}))[:MAX_GOSSIP_BATCH]:
            self._send(node.idx, peer, msg)
        self._send(node.idx, peer, SyncRequest(core.height))

    def _request_sync(self, node: SimNode, peer: int) -> None:
        if self.now - node.last_commit_tick < self.cfg.gossip_ticks:
            return
        if self.now - node.sync_sent.get(peer, -self.cfg.gossip_ticks) < self.cfg.gossip_ticks:
            return
        node.sync_sent[peer] = self.now
        assert node.core is not None
        self._send(node.idx, peer, SyncRequest(node.core.height))

    def _reply_sync(self, node: SimNode, peer: int, height: int) -> None:
        """Block sync: send the commit certificates from `height` on (bounded, rate-limited per peer)."""
        chain = node.disk.chain
        if height < 1 or height > len(chain):
            return
        key = (peer, height)
        if self.now - node.reply_sent.get(key, -self.cfg.gossip_ticks) < self.cfg.gossip_ticks // 2:
            return
        node.reply_sent[key] = self.now
        self._send(node.idx, peer, CommitBundle(tuple(chain[height - 1:height - 1 + MAX_COMMITS_PER_REPLY])))

    def _on_commits(self, node: SimNode, bundle: CommitBundle) -> None:
        for cert in bundle.commits:
            core = node.core
            if core is None or cert.height != node.height:
                continue
            if not self.is_valid_commit(cert, node.get_tip_id()):
                continue
            self.catchups += 1
            self._trace(f"{self.now} {node.idx} K{cert.height}.{cert.round}")
            if node.is_correct:
                self.checker.on_decide(node.idx, cert.height, cert.round, cert.value, cert.precommits, "catch-up")
            self._commit(node, cert)

    def is_valid_commit(self, cert: CommitCert, parent_id: bytes) -> bool:
        """What a node checks before using a commit from block sync: signed precommits of distinct validators for
        id(value) at (height, round), holding more than 2/3 of the power, and a value valid at its parent."""
        vid = compute_value_id(cert.value)
        power = 0
        voters: set[bytes] = set()
        for v in cert.precommits:
            if v not in self.checker.signed or v.validator in voters:
                return False
            if (v.type, v.height, v.round, v.value_id) != (VoteType.PRECOMMIT, cert.height, cert.round, vid):
                return False
            voters.add(v.validator)
            power += self.validators.get_power(v.validator)
        return self.validators.is_quorum(power) and is_valid_value(cert.value, cert.height, parent_id)

    # ------------------------------------------------------------------------------------------------ Byzantine

    def _split(self, height: int) -> frozenset[int]:
        """The half of the correct nodes that gets the Byzantine nodes' first version at `height` (they collude:
        all of them split the network the same way)."""
        got = self.splits.get(height)
        if got is None:
            correct = [n.idx for n in self.nodes if n.role != "silent"]
            order = self.rng_byz.shuffled(correct)
            got = frozenset(order[:len(order) // 2])
            self.splits[height] = got
        return got

    def _byzantine_send(self, node: SimNode, msg: Proposal | Vote) -> None:
        core = node.core
        assert core is not None
        self.checker.on_sign(node.idx, msg, False)
        self._hold(node, msg)
        alt: Proposal | Vote | None = None
        if node.role == "equivocate" and isinstance(msg, Proposal):
            parent = node.get_tip_id() if self.rng_byz.below(4) else bytes(32)  # one time in four: invalid
            value = make_value(msg.height, parent, node.idx, self.rng_byz.below(1 << 32))
            alt = Proposal(msg.height, msg.round, value, compute_value_id(value), -1, node.key)
            self.split_values[(msg.height, msg.round)] = (msg.value_id, alt.value_id)
        elif node.role in ("equivocate", "double-vote") and isinstance(msg, Vote):
            pair = self.split_values.get((msg.height, msg.round))
            if pair is not None:  # back each half's proposal in that half
                first = Vote(msg.type, msg.height, msg.round, pair[0], node.key)
                if first != msg:
                    self.checker.on_sign(node.idx, first, False)
                msg = first
                alt = Vote(msg.type, msg.height, msg.round, pair[1], node.key)
            elif node.role == "double-vote":
                others = [vid for vid in core.proposals.get(msg.round, {}) if vid != msg.value_id]
                alt_id = others[0] if others else (None if msg.value_id is not None else bytes(32))
                alt = Vote(msg.type, msg.height, msg.round, alt_id, node.key)
        if alt is None:
            self._send_all(node, msg)
        else:
            self.checker.on_sign(node.idx, alt, False)
            half = self._split(msg.height)
            for other in self.nodes:
                self._send(node.idx, other.idx, msg if other.idx in half else alt)
        if node.role == "spam":
            self._spam(node)

    def _spam(self, node: SimNode) -> None:
        """Messages for future rounds (near: inside the core's window; far: beyond it) and future heights."""
        core = node.core
        assert core is not None
        rng = self.rng_byz
        for _ in range(2):
            height = core.height + (rng.below(3) if rng.chance(250) else 0)
            far = rng.chance(300)
            rnd = core.round + (rng.between(11, 1_000_000) if far else rng.between(1, 10))
            msg: Proposal | Vote
            if self.validators.get_proposer(height, rnd) == node.key and rng.chance(500):
                value = make_value(height, node.get_tip_id(), node.idx, rng.below(1 << 32))
                msg = Proposal(height, rnd, value, compute_value_id(value), -1, node.key)
            else:
                known = [vid for p in core.proposals.values() for vid in p]
                vid = known[rng.below(len(known))] if known and rng.chance(500) else None
                msg = Vote(VoteType.PREVOTE if rng.chance(500) else VoteType.PRECOMMIT, height, rnd, vid, node.key)
            self.checker.on_sign(node.idx, msg, False)
            self._send_all(node, msg)

    # ------------------------------------------------------------------------------------------------ result

    def _result(self) -> SimResult:
        correct = [n for n in self.nodes if n.is_correct]
        rules: dict[str, int] = {}
        rounds: list[int] = []
        for n in correct:
            counts = dict(n.rules)
            if n.core is not None:
                for rule, c in n.core.rule_counts.items():
                    counts[rule] = counts.get(rule, 0) + c
            for rule, c in counts.items():
                rules[rule] = rules.get(rule, 0) + c
            rounds += n.decided_rounds
        proposers = [p[2] if (p := parse_value(v)) else -1 for _, v in sorted(self.checker.decided.items())]
        probes = {
            "decisions in round > 0": sum(1 for r in rounds if r > 0),
            "L28 unlocks": rules.get("L28-unlock", 0),
            "L55 round skips": rules.get("L55", 0),
            "L49 past-round decisions": rules.get("L49-past-round", 0),
            "proposer rotations": sum(1 for a, b in itertools.pairwise(proposers) if a != b),
            "catch-up commits": self.catchups,
            "restarts": sum(n.restarts for n in self.nodes),
            "evidence": sum(n.evidence for n in correct),
        }
        heights = min((n.height - 1 for n in correct), default=0)
        live = None if self.done_tick is None else self.done_tick - self.heal_tick
        return SimResult(
            config=self.cfg, trace_hash=self._hash.hexdigest(), violations=tuple(self.checker.violations),
            heights=heights, max_round=max(rounds, default=0), messages=self.messages, delivered=self.delivered,
            events=self.events, ticks=self.now, heal_tick=self.heal_tick, liveness_ticks=live, probes=probes,
            faults=dict(self.fault_counts), roles=tuple(n.role for n in self.nodes), powers=self.powers,
            trace_tail=tuple(self._tail))


def run_simulation(cfg: SimConfig) -> SimResult:
    """Run one seed."""
    return World(cfg).run()
