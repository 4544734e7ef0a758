"""Invariant checkers, called by the simulator on every step that could break them.

They use global knowledge no node has — every signed message, every stored block — which is what makes them an
oracle. Each check records a `Violation` instead of raising, so one run reports everything it found.

Checked (docs/spec/consensus.md, "Invariants"):
1. agreement — no two correct nodes store different blocks at one height, nor different bytes under one block ID
   (signatures included: ``txs_root`` commits to the signed transactions);
2. validity — every stored block extends the block stored below it (and passed the shell's `check_block`);
3. commit certificate — every stored commit passes `check_commit` (real signatures of > 2/3 of the power) against
   the validator set of its own height, checked when it is stored and again over the whole stored chain after
   every restart; the oracle keeps that set itself (genesis's, then each governance change the world submitted,
   from two heights after the block that carries it — the H+2 rule), and every stored header must name it
   (``validators_hash``) and the next one (``next_validators_hash``);
4. no double signing — no correct validator signs two different messages for one (height, round, step), across
   restarts; the signer guard never refuses a correct node (a refusal means a replay diverged); and after a
   restart a node re-sends only what it signed (every own message on the wire was signed through the guard);
5. validator sets — a correct core runs each height with the oracle's set of that height (an observer's key is
   absent from it, so it neither proposes nor votes);
6. locking — lockedRound ≤ validRound ≤ round after every step; a correct precommit for v in r has a polka
   (> 2/3 signed prevotes) for v in r; a correct prevote for v ≠ lockedValue in round r answers a proposal with
   lockedRound ≤ vr < r and a polka for v in vr (L22/L28); a restart never loses a lock;
7. transactions — one is stored at most once, and an acknowledged one (stored by a correct node: what
   `wait=commit` answers) is never lost: every correct node that reached its height holds it there;
   evidence — a committed equivocation proof never names a correct validator, and one is committed once;
8. liveness and the event budget — checked by the world."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qilian.consensus import Core, Proposal, ValidatorSet, Vote, VoteType
from qilian.consensus.signer import compute_step
from qilian.crypto.suite import Suite
from qilian.execution.block import BlockInvalid, check_commit
from qilian.p2p.messages import ProposalMsg
from qilian.types.codec import CodecError
from qilian.types.core import PREVOTE, Block, Commit, Validator, compute_evidence_hash
from qilian.types.core import ValidatorSet as ChainValidators
from qilian.types.core import Vote as SignedVote


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant."""

    kind: str
    """agreement, block-bytes, evidence, validity, certificate, valset, double-sign, guard-refused, resend, locking,
    tx-twice, tx-lost, divergence, peer-violation, exception, liveness, budget."""
    tick: int
    """Simulated time it was found."""
    node: int
    """Node index (-1: not one node's fault)."""
    detail: str
    """Human-readable description."""


def compute_core_message(suite: Suite, m: ProposalMsg | SignedVote) -> Proposal | Vote:
    """The consensus core's view of a signed wire message."""
    if isinstance(m, ProposalMsg):
        value = m.header.encode()
        return Proposal(m.header.height, m.round, value, suite.hash(value), m.valid_round - 1, m.proposer)
    vtype = VoteType.PREVOTE if m.kind == PREVOTE else VoteType.PRECOMMIT
    return Vote(vtype, m.height, m.round, m.block_id or None, m.validator)


class Checker:
    """Global oracle of one run."""

    def __init__(self, powers: dict[bytes, int], suite: Suite, chain_id: str, validators: ChainValidators) -> None:
        self.validators = ValidatorSet(powers)
        """The genesis set as the core sees it."""
        self.suite = suite
        self.chain_id = chain_id
        self.chain_validators = validators
        """The genesis set."""
        self.expected_updates: dict[bytes, tuple[tuple[bytes, bytes, int], ...]] = {}
        """Governance transaction hash → the validator updates (address, public key, power; 0 removes) it makes."""
        self.decided_updates: dict[int, tuple[tuple[bytes, bytes, int], ...]] = {}
        """Height whose block carries a validator update → the update (it signs from that height + 2)."""
        self._sets: dict[int, ChainValidators] = {}
        self._consensus_sets: dict[int, ValidatorSet] = {}
        self.signed: set[Proposal | Vote] = set()
        """Every message signed by the holder of its key."""
        self.signed_wires: set[ProposalMsg | SignedVote] = set()
        """Every wire message a correct node signed through its guard (what it may ever send as its own)."""
        self._prevoters: dict[tuple[int, int, bytes | None], set[bytes]] = {}
        """(height, round, value ID) → validators that signed a prevote for it (weighed with the set of the
        height when asked: a message may be signed before the oracle knows its height's set)."""
        self._correct_signed: dict[tuple[bytes, int, int, int], Proposal | Vote] = {}
        self.stored: dict[int, bytes] = {}
        """height → block ID first stored by a correct node."""
        self.stored_bytes: dict[int, bytes] = {}
        """height → hash of the encoded block (transactions and signatures) first stored by a correct node."""
        self.acked: dict[bytes, int] = {}
        """Transaction hash → height it was stored at (acknowledged to the client)."""
        self.stores = 0
        """Blocks stored by correct nodes (each checked)."""
        self.correct_validators: frozenset[bytes] = frozenset()
        """Addresses held only by correct nodes (set by the world): no evidence may name one."""
        self.evidence_committed: dict[bytes, int] = {}
        """Evidence hash → height of the block that committed it (as first stored by a correct node)."""
        self.violations: list[Violation] = []
        self.now = 0

    def _fail(self, kind: str, node: int, detail: str) -> None:
        self.violations.append(Violation(kind, self.now, node, detail))

    # ------------------------------------------------------------------------------------------------ signatures

    def on_sign(self, node: int, message: Proposal | Vote, correct: bool,
                wire: ProposalMsg | SignedVote | None = None) -> None:
        """A message was signed (and may now be sent and relayed by anyone)."""
        self.signed.add(message)
        if isinstance(message, Vote) and message.type == VoteType.PREVOTE:
            self._prevoters.setdefault((message.height, message.round, message.value_id), set()).add(
                message.validator)
        if not correct:
            return
        if wire is not None:
            self.signed_wires.add(wire)
        signer = message.proposer if isinstance(message, Proposal) else message.validator
        slot = (signer, message.height, message.round, compute_step(message))
        earlier = self._correct_signed.get(slot)
        if earlier is None:
            self._correct_signed[slot] = message
        elif earlier != message:
            self._fail("double-sign", node, f"correct validator {signer.hex()[:8]} signed {_brief(earlier)} and "
                                            f"{_brief(message)}")

    def has_signed(self, message: Proposal | Vote) -> bool:
        """Whether a correct node signed exactly this message."""
        signer = message.proposer if isinstance(message, Proposal) else message.validator
        return self._correct_signed.get((signer, message.height, message.round, compute_step(message))) == message

    def on_send_own(self, node: int, address: bytes, wire: ProposalMsg | SignedVote) -> None:
        """A correct node put a consensus message on the wire: if it is its own, it must be one it signed
        through its guard (a restart re-sends what it signed, never something new or altered)."""
        signer = wire.proposer if isinstance(wire, ProposalMsg) else wire.validator
        if signer == address and wire not in self.signed_wires:
            self._fail("resend", node, f"sent own {_brief(compute_core_message(self.suite, wire))} that it never "
                                       f"signed through its guard")

    def on_guard_refused(self, node: int, message: Proposal | Vote, reason: str) -> None:
        """The signer guard refused a message a correct core asked to sign."""
        self._fail("guard-refused", node, f"{_brief(message)}: {reason}")

    def is_polka(self, height: int, round: int, value_id: bytes | None) -> bool:
        """Signed prevotes of more than 2/3 of the power of the set of `height` for `value_id` in (height, round)."""
        vset = self.get_consensus_set(height)
        power = sum(vset.get_power(v) for v in self._prevoters.get((height, round, value_id), ()))
        return vset.is_quorum(power)

    # ------------------------------------------------------------------------------------------------ sets

    def expect_validator_update(self, tx_hash: bytes, updates: Sequence[tuple[bytes, bytes, int]]) -> None:
        """The world submitted a governance transaction that updates the validator set (it is built valid: the
        oracle applies it from two heights after the block that carries it)."""
        self.expected_updates[tx_hash] = tuple(updates)

    def get_set(self, height: int) -> ChainValidators:
        """The set that must sign `height`: genesis's with every update carried by a block ≤ height − 2, in height
        order (the oracle's own model of the H+2 rule, not the node's lookup)."""
        vset = self._sets.get(height)
        if vset is None:
            powers = {v.address: v for v in self.chain_validators.validators}
            changed = False
            for h in sorted(self.decided_updates):
                if h > height - 2:
                    break
                for address, public_key, power in self.decided_updates[h]:
                    changed = True
                    if power == 0:
                        powers.pop(address, None)
                    else:
                        powers[address] = Validator(address, public_key, power)
            vset = ChainValidators(tuple(powers[a] for a in sorted(powers))) if changed else self.chain_validators
            self._sets[height] = vset
        return vset

    def get_consensus_set(self, height: int) -> ValidatorSet:
        """The core's view of :meth:`get_set`."""
        cv = self._consensus_sets.get(height)
        if cv is None:
            cv = self._consensus_sets[height] = ValidatorSet({v.address: v.power for v in
                                                              self.get_set(height).validators})
        return cv

    def _note_updates(self, height: int, hashes: list[bytes]) -> None:
        updates = [u for th in hashes for u in self.expected_updates.get(th, ())]
        if updates and height not in self.decided_updates:
            self.decided_updates[height] = tuple(updates)
            self._sets = {h: s for h, s in self._sets.items() if h < height + 2}
            self._consensus_sets = {h: s for h, s in self._consensus_sets.items() if h < height + 2}

    # ------------------------------------------------------------------------------------------------ storage

    def on_store(self, node: int, block: Block, commit: Commit, hashes: list[bytes]) -> None:
        """A correct node stored a block durably (via consensus or block sync)."""
        self.stores += 1
        h = block.header.height
        block_id = self.suite.hash(block.header.encode())
        first = self.stored.get(h)
        if first is None:
            self.stored[h] = block_id
        elif first != block_id:
            self._fail("agreement", node, f"height {h}: stored {block_id.hex()[:8]}, another correct node stored "
                                          f"{first.hex()[:8]}")
        digest = self.suite.hash(block.encode())
        first_bytes = self.stored_bytes.setdefault(h, digest)
        if first_bytes != digest and first == block_id:
            self._fail("block-bytes", node, f"height {h}: block {block_id.hex()[:8]} stored with other bytes than "
                                            f"another correct node's (a signature differs)")
        below = self.stored.get(h - 1)
        if h > 1 and below is not None and block.header.prev_block_id != below:
            self._fail("validity", node, f"height {h}: block does not extend the stored block {below.hex()[:8]}")
        self._note_updates(h, hashes)
        try:
            check_commit(self.suite, self.chain_id, self.get_set(h), commit, block_id, h)
        except BlockInvalid as exc:
            self._fail("certificate", node, f"height {h}: stored commit fails check_commit with the set of its "
                                            f"height: {exc}")
        if block.header.validators_hash != self.get_set(h).compute_hash(self.suite):
            self._fail("valset", node, f"height {h}: header names a validator set other than the set of height {h}")
        if block.header.next_validators_hash != self.get_set(h + 1).compute_hash(self.suite):
            self._fail("valset", node, f"height {h}: header names a next validator set other than the set of "
                                       f"height {h + 1}")
        for ev in block.evidence:
            if ev.vote_a.validator in self.correct_validators:
                self._fail("evidence", node, f"height {h}: block commits equivocation evidence against correct "
                                             f"validator {ev.vote_a.validator.hex()[:8]}")
            eh = compute_evidence_hash(self.suite, ev)
            if self.evidence_committed.setdefault(eh, h) != h:
                self._fail("evidence", node, f"evidence {eh.hex()[:8]} committed at heights "
                                             f"{self.evidence_committed[eh]} and {h}")
        for th in hashes:
            at = self.acked.get(th)
            if at is None:
                self.acked[th] = h
            elif at != h:
                self._fail("tx-twice", node, f"transaction {th.hex()[:8]} stored at heights {at} and {h}")

    def check_stored_chain(self, node: int, ledger: object) -> None:
        """After a restart: every stored block decodes, chains, and its commit passes check_commit."""
        blocks: dict[int, bytes] = getattr(ledger, "blocks")  # noqa: B009
        commits: dict[int, Commit] = getattr(ledger, "commits")  # noqa: B009
        prev = b""
        for h in sorted(blocks):
            try:
                block = Block.decode(blocks[h])
                block_id = self.suite.hash(block.header.encode())
                if block.header.prev_block_id != prev:
                    raise BlockInvalid("does not extend the stored block below")
                check_commit(self.suite, self.chain_id, self.get_set(h), commits[h], block_id, h)
            except (BlockInvalid, CodecError, KeyError) as exc:
                self._fail("certificate", node, f"after restart, stored height {h}: {exc}")
                return
            prev = block_id

    def check_acks(self, node: int, ledger: object) -> None:
        """No acknowledged transaction is lost: a correct node at or above its height holds it there."""
        tip = getattr(ledger, "tip").height  # noqa: B009
        index: dict[bytes, tuple[int, int]] = getattr(ledger, "tx_index")  # noqa: B009
        for th, h in self.acked.items():
            if h <= tip and index.get(th, (None,))[0] != h:
                self._fail("tx-lost", node, f"transaction {th.hex()[:8]} acknowledged at height {h} is not there")

    # ------------------------------------------------------------------------------------------------ locking

    def on_core_step(self, node: int, core: Core, own: list[Proposal | Vote], lock_before: tuple[int, bytes | None]
                     ) -> None:
        """After a correct core consumed one input (or started a height): `own` are the messages it asked to
        sign, in order; `lock_before` its (lockedRound, id(lockedValue)) before the step."""
        if dict(core.validators.powers) != dict(self.get_consensus_set(core.height).powers):
            self._fail("valset", node, f"h{core.height}: the core runs with a validator set other than the set of "
                                       f"height {core.height} (a change signs from two heights after its block)")
        if not (core.locked_round <= core.valid_round <= core.round):
            self._fail("locking", node, f"h{core.height}: lockedRound {core.locked_round} validRound "
                                        f"{core.valid_round} round {core.round}")
        locked_round, locked_id = lock_before
        for m in own:
            if isinstance(m, Proposal) or m.height != core.height:
                continue
            if m.type == VoteType.PRECOMMIT:
                if m.value_id is not None:
                    if not self.is_polka(m.height, m.round, m.value_id):
                        self._fail("locking", node, f"{_brief(m)} without a polka in its round")
                    locked_round, locked_id = m.round, m.value_id  # L36 locks exactly when it precommits a value
                continue
            if m.value_id is None or locked_round < 0 or locked_id == m.value_id or m.round <= locked_round:
                continue
            proposal = core.proposals.get(m.round, {}).get(m.value_id)
            if proposal is None:
                self._fail("locking", node, f"{_brief(m)} while locked in round {locked_round}, with no proposal")
                continue
            vr = proposal.valid_round
            if not (locked_round <= vr < m.round and self.is_polka(m.height, vr, m.value_id)):
                self._fail("locking", node, f"{_brief(m)} while locked on {_hex(locked_id)} in round "
                                            f"{locked_round}: proposal vr {vr} has no polka at or above the lock")

    def on_restart(self, node: int, core: Core, lock_before_crash: tuple[int, int]) -> None:
        """A restarted node must hold at least the lock it had (same height) before the crash."""
        height, locked_round = lock_before_crash
        if core.height == height and core.locked_round < locked_round:
            self._fail("locking", node, f"h{height}: lock of round {locked_round} lost in a restart "
                                        f"(now {core.locked_round})")


def _hex(b: bytes | None) -> str:
    return "nil" if b is None else b.hex()[:8]


def _brief(m: Proposal | Vote) -> str:
    if isinstance(m, Proposal):
        return f"PROPOSAL(h{m.height} r{m.round} {_hex(m.value_id)} vr{m.valid_round}) by {m.proposer.hex()[:8]}"
    kind = "PREVOTE" if m.type == VoteType.PREVOTE else "PRECOMMIT"
    return f"{kind}(h{m.height} r{m.round} {_hex(m.value_id)}) by {m.validator.hex()[:8]}"
