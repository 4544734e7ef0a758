"""Invariant checkers, called by the simulator on every step that could break them.

They use global knowledge no node has — every genuinely signed message, every decision — which is what makes them
an oracle. Each check records a `Violation` instead of raising, so one run reports everything it found.

Checked (docs/spec/consensus.md, "Invariants"):
1. agreement — no two correct nodes decide different values at one height;
2. validity — every decided value is valid at its parent (the decided value of the height below);
3. commit certificate — every decision carries genuine precommits, for that value, height and round, of distinct
   validators holding more than 2/3 of the power;
4. no double signing — no correct validator signs two different messages for one (height, round, step), across
   restarts; and the signer guard never has to refuse a correct core (a refusal means the core or its replay
   diverged);
5. locking — lockedRound ≤ validRound ≤ round after every step; a correct precommit for v in round r has a polka
   (2f+1 genuine prevotes) for v in r; a correct prevote for v ≠ lockedValue in round r answers a proposal with
   lockedRound ≤ vr < r and a polka for v in vr (L22/L28); a restart never loses a lock;
6. liveness — after the heal, every correct node commits a new height within the bound (checked by the world)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qilian.consensus import Core, Proposal, ValidatorSet, Vote, VoteType
from qilian.consensus.signer import compute_step
from qilian.sim.app import GENESIS_ID, is_valid_value


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant."""

    kind: str
    """agreement, validity, certificate, double-sign, guard-refused, locking, liveness, budget."""
    tick: int
    """Simulated time it was found."""
    node: int
    """Node index (-1: not one node's fault)."""
    detail: str
    """Human-readable description."""


class Checker:
    """Global oracle of one run."""

    def __init__(self, validators: ValidatorSet, id_of: Callable[[bytes], bytes]) -> None:
        self.validators = validators
        self.id_of = id_of
        self.signed: set[Proposal | Vote] = set()
        """Every message signed by the holder of its key: the simulator's model of a valid signature."""
        self._prevote_power: dict[tuple[int, int, bytes | None], int] = {}
        self._prevoters: set[tuple[int, int, bytes | None, bytes]] = set()
        self._correct_signed: dict[tuple[bytes, int, int, int], Proposal | Vote] = {}
        self.decided: dict[int, bytes] = {}
        """height → decided value (first decision seen)."""
        self.decided_ids: dict[int, bytes] = {0: GENESIS_ID}
        self.decisions = 0
        """Decisions checked (by core or by catch-up)."""
        self.violations: list[Violation] = []
        self.now = 0

    def _fail(self, kind: str, node: int, detail: str) -> None:
        self.violations.append(Violation(kind, self.now, node, detail))

    # ------------------------------------------------------------------------------------------------ signatures

    def on_sign(self, node: int, message: Proposal | Vote, correct: bool) -> None:
        """A message was signed (and may now be sent and relayed by anyone)."""
        self.signed.add(message)
        if isinstance(message, Vote) and message.type == VoteType.PREVOTE:
            key = (message.height, message.round, message.value_id, message.validator)
            if key not in self._prevoters:
                self._prevoters.add(key)
                pk = (message.height, message.round, message.value_id)
                power = self.validators.get_power(message.validator)
                self._prevote_power[pk] = self._prevote_power.get(pk, 0) + power
        if not correct:
            return
        signer = message.proposer if isinstance(message, Proposal) else message.validator
        slot = (signer, message.height, message.round, compute_step(message))
        earlier = self._correct_signed.get(slot)
        if earlier is None:
            self._correct_signed[slot] = message
        elif earlier != message:
            self._fail("double-sign", node, f"correct validator {signer.hex()[:8]} signed {_brief(earlier)} and "
                                            f"{_brief(message)}")

    def on_guard_refused(self, node: int, message: Proposal | Vote, reason: str) -> None:
        """The signer guard refused a message a correct core asked to sign."""
        self._fail("guard-refused", node, f"{_brief(message)}: {reason}")

    def is_polka(self, height: int, round: int, value_id: bytes | None, pending: Vote | None = None) -> bool:
        """Genuine prevotes of more than 2/3 of the power for `value_id` in (height, round); `pending` is an own
        prevote of the same step, counted by the core but not signed yet."""
        power = self._prevote_power.get((height, round, value_id), 0)
        if pending is not None and (pending.height, pending.round, pending.value_id) == (height, round, value_id) \
                and (height, round, value_id, pending.validator) not in self._prevoters:
            power += self.validators.get_power(pending.validator)
        return self.validators.is_quorum(power)

    # ------------------------------------------------------------------------------------------------ decisions

    def on_decide(self, node: int, height: int, round: int, value: bytes, precommits: tuple[Vote, ...],
                  via: str) -> None:
        """A correct node decided `value` at `height` (via its core or a verified catch-up commit)."""
        self.decisions += 1
        first = self.decided.get(height)
        if first is None:
            self.decided[height] = value
            self.decided_ids[height] = self.id_of(value)
        elif first != value:
            self._fail("agreement", node, f"height {height}: decided {_hex(self.id_of(value))} via {via}, another "
                                          f"correct node decided {_hex(self.id_of(first))}")
        parent = self.decided_ids.get(height - 1)
        if parent is not None and not is_valid_value(value, height, parent):
            self._fail("validity", node, f"height {height}: decided {_hex(self.id_of(value))} ({_short(value)}) is "
                                         f"not valid at its parent {_hex(parent)}")
        self.check_certificate(node, height, round, value, precommits)

    def check_certificate(self, node: int, height: int, round: int, value: bytes,
                          precommits: tuple[Vote, ...]) -> bool:
        """Invariant 3; returns whether the certificate is good."""
        vid = self.id_of(value)
        seen: set[bytes] = set()
        power = 0
        for v in precommits:
            if v not in self.signed:
                self._fail("certificate", node, f"height {height}: precommit {_brief(v)} was never signed")
                return False
            if (v.type, v.height, v.round, v.value_id) != (VoteType.PRECOMMIT, height, round, vid):
                self._fail("certificate", node, f"height {height}: {_brief(v)} is not a precommit for the value")
                return False
            if v.validator in seen:
                self._fail("certificate", node, f"height {height}: two precommits of {v.validator.hex()[:8]}")
                return False
            seen.add(v.validator)
            power += self.validators.get_power(v.validator)
        if not self.validators.is_quorum(power):
            self._fail("certificate", node, f"height {height}: precommits hold {power}/{self.validators.total}")
            return False
        return True

    # ------------------------------------------------------------------------------------------------ locking

    def on_core_step(self, node: int, core: Core, own: list[Proposal | Vote], lock_before: tuple[int, bytes | None]
                     ) -> None:
        """After a correct core consumed one input (or started a height): `own` are the messages it asked to
        sign, in order; `lock_before` its (lockedRound, id(lockedValue)) before the step."""
        if not (core.locked_round <= core.valid_round <= core.round):
            self._fail("locking", node, f"h{core.height}: lockedRound {core.locked_round} validRound "
                                        f"{core.valid_round} round {core.round}")
        locked_round, locked_id = lock_before
        own_prevote: Vote | None = None
        for m in own:
            if isinstance(m, Proposal) or m.height != core.height:
                continue
            if m.type == VoteType.PRECOMMIT:
                if m.value_id is not None:
                    if not self.is_polka(m.height, m.round, m.value_id, own_prevote):
                        self._fail("locking", node, f"{_brief(m)} without a polka in its round")
                    locked_round, locked_id = m.round, m.value_id  # L36 locks exactly when it precommits a value
                continue
            own_prevote = m
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


def _short(value: bytes) -> str:
    return value[:40].decode(errors="replace")


def _brief(m: Proposal | Vote) -> str:
    if isinstance(m, Proposal):
        return f"PROPOSAL(h{m.height} r{m.round} {_hex(m.value_id)} vr{m.valid_round}) by {m.proposer.hex()[:8]}"
    kind = "PREVOTE" if m.type == VoteType.PREVOTE else "PRECOMMIT"
    return f"{kind}(h{m.height} r{m.round} {_hex(m.value_id)}) by {m.validator.hex()[:8]}"
