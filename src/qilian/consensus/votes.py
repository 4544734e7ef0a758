"""Vote keeping for one height: tallies by power, thresholds fired once, equivocation turned into evidence.

A validator's first vote for a (round, type) counts; an identical copy is ignored; a different one is evidence — and
it counts too, for its own value (never twice in the "any" total), up to `MAX_VALUES_PER_VALIDATOR` distinct values.
Why: the paper counts the messages a process received; if an equivocator's second vote were dropped, a correct node
that saw the other vote first could never see a polka that other correct nodes saw and locked on, and the height
could stall forever with a single Byzantine validator (found by the simulator: one key on two nodes among 4
validators; tests/sim checks that reverting this rule brings the stall back). Counting it is safe: two quorums for
different values still share a correct validator, who never votes twice.

Votes of rounds further than `max_future_rounds` above the core's round are not stored (a bound on what a spammer
can make us keep), but their round is remembered per validator — one integer each — for L55."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from qilian.consensus.types import Evidence, Vote, VoteType
from qilian.consensus.validators import ValidatorSet


class ThresholdKind(enum.Enum):
    """What a set of votes of one (round, type) has reached."""

    POLKA_VALUE = "2f+1 prevotes for a value"
    POLKA_NIL = "2f+1 prevotes for nil"
    POLKA_ANY = "2f+1 prevotes for anything"
    COMMIT_VALUE = "2f+1 precommits for a value"
    COMMIT_ANY = "2f+1 precommits for anything"
    SKIP_ROUND = "f+1 of the power has sent messages of this round"


@dataclass(frozen=True, slots=True)
class Threshold:
    """A threshold reached; reported exactly once by `VoteKeeper.process_vote`."""

    kind: ThresholdKind
    """Which threshold."""
    round: int
    """Round of the votes."""
    value_id: bytes | None = None
    """For POLKA_VALUE / COMMIT_VALUE: the value."""


MAX_VALUES_PER_VALIDATOR = 3
"""Distinct values one validator's votes of one (round, type) count for (an equivocator's first vote and two
conflicting ones: enough for two proposals and nil); further conflicting votes are evidence only."""


@dataclass(slots=True)
class _Tally:
    votes: dict[bytes, Vote] = field(default_factory=dict)
    by_value: dict[bytes | None, int] = field(default_factory=dict)
    total: int = 0
    conflicting: dict[tuple[bytes, bytes | None], Vote] = field(default_factory=dict)
    """Counted votes of equivocators beyond their first, by (validator, value)."""


@dataclass(frozen=True, slots=True)
class AddResult:
    """What adding one vote produced."""

    counted: bool
    """The vote was new and stored."""
    thresholds: tuple[Threshold, ...] = ()
    """Thresholds crossed for the first time by this vote."""
    evidence: Evidence | None = None
    """Set when the vote conflicts with an earlier one of the same validator."""


class VoteKeeper:
    """Votes of one height."""

    def __init__(self, height: int, validators: ValidatorSet, max_future_rounds: int = 10) -> None:
        assert max_future_rounds >= 1
        self.height = height
        self.validators = validators
        self.max_future_rounds = max_future_rounds
        self._tallies: dict[tuple[int, VoteType], _Tally] = {}
        self._fired: set[Threshold] = set()
        self._round_senders: dict[int, set[bytes]] = {}
        self.highest_round: dict[bytes, int] = {}
        """Highest round each validator has sent a message for at this height."""
        self.evidence: list[Evidence] = []
        """All equivocations seen at this height."""

    # ---------------------------------------------------------------------------------------------- accessors

    def get_power_for(self, round: int, vote_type: VoteType, value_id: bytes | None) -> int:
        """Power of the votes of (round, type) for `value_id` (None: nil)."""
        tally = self._tallies.get((round, vote_type))
        return tally.by_value.get(value_id, 0) if tally else 0

    def get_power_any(self, round: int, vote_type: VoteType) -> int:
        """Power of all votes of (round, type)."""
        tally = self._tallies.get((round, vote_type))
        return tally.total if tally else 0

    def get_votes_for(self, round: int, vote_type: VoteType, value_id: bytes | None) -> tuple[Vote, ...]:
        """The votes of (round, type) for `value_id`, ordered by validator address."""
        tally = self._tallies.get((round, vote_type))
        if not tally:
            return ()
        votes = [v for v in tally.votes.values() if v.value_id == value_id]
        votes += [v for (_, vid), v in tally.conflicting.items() if vid == value_id]
        return tuple(sorted(votes, key=lambda v: v.validator))

    def is_polka_for(self, round: int, value_id: bytes | None) -> bool:
        """2f+1 prevotes of `round` for `value_id`."""
        return self.validators.is_quorum(self.get_power_for(round, VoteType.PREVOTE, value_id))

    def is_commit_for(self, round: int, value_id: bytes) -> bool:
        """2f+1 precommits of `round` for `value_id`."""
        return self.validators.is_quorum(self.get_power_for(round, VoteType.PRECOMMIT, value_id))

    def is_quorum_any(self, round: int, vote_type: VoteType) -> bool:
        """2f+1 votes of (round, type) for anything."""
        return self.validators.is_quorum(self.get_power_any(round, vote_type))

    def get_skip_round(self, current_round: int) -> int | None:
        """L55: the highest round r > current_round such that validators of more than 1/3 of the power have sent
        messages of round ≥ r (at least one of them is correct and is there), or None."""
        rounds = sorted({r for r in self.highest_round.values() if r > current_round}, reverse=True)
        for r in rounds:
            power = sum(self.validators.get_power(a) for a, hr in self.highest_round.items() if hr >= r)
            if self.validators.is_one_third(power):
                return r
        return None

    # ---------------------------------------------------------------------------------------------- mutators

    def process_sender(self, address: bytes, round: int, current_round: int) -> tuple[Threshold, ...]:
        """Note that `address` sent a message (vote or proposal) of `round`; beyond the window only its round."""
        if self.validators.get_power(address) == 0 or round < 0:
            return ()
        if round > self.highest_round.get(address, -1):
            self.highest_round[address] = round
        if round > current_round + self.max_future_rounds:
            return ()
        senders = self._round_senders.setdefault(round, set())
        senders.add(address)
        power = sum(self.validators.get_power(a) for a in senders)
        if self.validators.is_one_third(power):
            return self._fire(Threshold(ThresholdKind.SKIP_ROUND, round))
        return ()

    def process_vote(self, vote: Vote, current_round: int) -> AddResult:
        """Add a vote (already verified by the shell). Votes of other heights or non-validators are ignored."""
        power = self.validators.get_power(vote.validator)
        if vote.height != self.height or power == 0 or vote.round < 0:
            return AddResult(counted=False)
        if vote.round > current_round + self.max_future_rounds:
            self.process_sender(vote.validator, vote.round, current_round)
            return AddResult(counted=False)
        tally = self._tallies.setdefault((vote.round, vote.type), _Tally())
        earlier = tally.votes.get(vote.validator)
        if earlier is not None:
            if earlier == vote or (vote.validator, vote.value_id) in tally.conflicting:
                return AddResult(counted=False)
            ev = Evidence(earlier, vote)
            self.evidence.append(ev)
            extra = sum(1 for a, _ in tally.conflicting if a == vote.validator)
            if extra + 1 >= MAX_VALUES_PER_VALIDATOR:
                return AddResult(counted=False, evidence=ev)
            tally.conflicting[(vote.validator, vote.value_id)] = vote
            tally.by_value[vote.value_id] = tally.by_value.get(vote.value_id, 0) + power
            fired = []
        else:
            ev = None
            tally.votes[vote.validator] = vote
            tally.by_value[vote.value_id] = tally.by_value.get(vote.value_id, 0) + power
            tally.total += power
            fired = list(self.process_sender(vote.validator, vote.round, current_round))
        q = self.validators.is_quorum
        if vote.type == VoteType.PREVOTE:
            if q(tally.by_value[vote.value_id]):
                kind = ThresholdKind.POLKA_NIL if vote.value_id is None else ThresholdKind.POLKA_VALUE
                fired += self._fire(Threshold(kind, vote.round, vote.value_id))
            if q(tally.total):
                fired += self._fire(Threshold(ThresholdKind.POLKA_ANY, vote.round))
        else:
            if vote.value_id is not None and q(tally.by_value[vote.value_id]):
                fired += self._fire(Threshold(ThresholdKind.COMMIT_VALUE, vote.round, vote.value_id))
            if q(tally.total):
                fired += self._fire(Threshold(ThresholdKind.COMMIT_ANY, vote.round))
        return AddResult(counted=True, thresholds=tuple(fired), evidence=ev)

    def _fire(self, t: Threshold) -> tuple[Threshold, ...]:
        if t in self._fired:
            return ()
        self._fired.add(t)
        return (t,)
