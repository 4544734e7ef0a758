"""The Tendermint round state machine: Algorithm 1 of "The latest gossip on BFT consensus" (Buchman, Kwon,
Milosevic, 2018), as pure code.

`Core.process(input)` and `Core.start_height(h)` return the list of effects for the shell to execute; the core does
no IO. After every input the core applies enabled rules one at a time, highest priority first, until none is
enabled. The priority (docs/spec/consensus.md) is

    L49 decide > L55 round skip > L28 > L22 (prevote on a proposal) > L36 (lock / valid value) > L44 (precommit nil)
    > L34 (prevote timer) > L47 (precommit timer);

L57, L61 and L65 are the handlers of `TimeoutElapsed` and run when their timer fires. Deciding first means a node
that can decide never wastes a vote; skipping a round before voting means it never votes in a round it is leaving.

By default the core counts its own messages itself (the shell must not feed them back). With
``count_own_votes=False`` (the node) it counts its own votes only when the shell feeds them back after signing them:
a vote the signer guard refused, or one lost in a crash before it was signed, is then never counted — the core can
never decide on a precommit of its own that does not exist. Deviations from the paper, all
documented: the proposer also schedules timeoutPropose (so a slow `RequestValue` cannot stall it); L55 fires on
"more than 1/3 of the power has sent messages of rounds ≥ r", which holds whenever the paper's condition does; and
after a decision the core waits for `start_height(h + 1)` so the shell can commit first."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

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
    TimeoutKind,
    ValidateValue,
    ValidityAnswer,
    Vote,
    VoteType,
)
from qilian.consensus.validators import ValidatorSet
from qilian.consensus.votes import VoteKeeper

MAX_PROPOSALS_PER_ROUND = 2
"""A second, conflicting proposal is kept (it may be the one a quorum saw); further ones are dropped."""
MAX_RULES_PER_INPUT = 10_000
"""Guard against a rule that is enabled forever (a bug): every rule must change state when it fires."""


def compute_value_id(value: bytes) -> bytes:
    """Default id(v): SHA-256 of the value. The node passes the id function of its crypto suite."""
    return hashlib.sha256(value).digest()


class Core:
    """State of one validator (or observer) running Tendermint at one height at a time."""

    def __init__(
        self,
        address: bytes,
        validators: ValidatorSet,
        timeouts: TimeoutConfig | None = None,
        id_of: Callable[[bytes], bytes] = compute_value_id,
        max_future_rounds: int = 10,
        max_buffered: int = 1000,
        count_own_votes: bool = True,
    ) -> None:
        assert max_future_rounds >= 1 and max_buffered >= 0
        self.address = address
        """This node's validator address (need not be in the set: an observer never proposes and never votes)."""
        self.validators = validators
        self.timeouts = timeouts or TimeoutConfig()
        self.id_of = id_of
        self.max_future_rounds = max_future_rounds
        """Messages more than this many rounds ahead are not stored (only their round, for L55)."""
        self.max_buffered = max_buffered
        """Bound on messages buffered for the next height."""
        self.count_own_votes = count_own_votes
        """Count an own vote when it is broadcast (simulator) or only when the shell feeds it back signed (node)."""
        self.buffer: list[Input] = []
        """Messages for height + 1, replayed by `start_height`."""
        self.dropped = 0
        """Messages dropped because a bound was hit."""
        self.rule_counts: dict[str, int] = {}
        """How often each rule fired (coverage probes of the simulator)."""
        self._reset(0)

    def _reset(self, height: int) -> None:
        self.height = height
        self.round = -1
        self.step = Step.PROPOSE
        self.locked_value: bytes | None = None
        self.locked_id: bytes | None = None
        """id(lockedValue), kept beside it."""
        self.locked_round = -1
        self.valid_value: bytes | None = None
        self.valid_round = -1
        self.decision: Decide | None = None
        self.keeper = VoteKeeper(height, self.validators, self.max_future_rounds)
        self.proposals: dict[int, dict[bytes, Proposal]] = {}
        self.validity: dict[bytes, bool] = {}
        self._validation_requested: set[bytes] = set()
        self._proposed = False
        self._l34_done = False
        self._l36_done = False
        self._l47_done = False

    # ------------------------------------------------------------------------------------------------ accessors

    def is_proposer(self, round: int) -> bool:
        """Whether this node proposes in `round` of the current height."""
        return self.validators.get_proposer(self.height, round) == self.address

    def _count(self, rule: str) -> None:
        self.rule_counts[rule] = self.rule_counts.get(rule, 0) + 1

    # ------------------------------------------------------------------------------------------------ entry points

    def start_height(self, height: int, validators: ValidatorSet | None = None) -> list[Output]:
        """Enter `height` (after the previous one was committed) and run StartRound(0) (L10-L11)."""
        assert height > self.height or self.round == -1, "heights only go up"
        if validators is not None:
            self.validators = validators
        self._reset(height)
        out = self._start_round(0)
        buffered, self.buffer = self.buffer, []
        for inp in buffered:
            out += self._dispatch(inp)
        out += self._run_rules()
        return out

    def process(self, inp: Input) -> list[Output]:
        """Consume one input; return the effects, in order."""
        out = self._dispatch(inp)
        return out + self._run_rules()

    def _dispatch(self, inp: Input) -> list[Output]:
        if isinstance(inp, ProposalReceived):
            return self._on_proposal(inp)
        if isinstance(inp, PrevoteReceived | PrecommitReceived):
            return self._on_vote(inp)
        if isinstance(inp, TimeoutElapsed):
            return self._on_timeout(inp)
        if isinstance(inp, ProposalValueReady):
            return self._on_value_ready(inp)
        if isinstance(inp, ValidityAnswer):
            if inp.value_id in self._validation_requested:
                self.validity[inp.value_id] = inp.valid
            return []
        raise TypeError(f"not a consensus input: {inp!r}")

    def _is_future_height(self, inp: Input, height: int) -> bool:
        if height <= self.height:
            return False
        if height == self.height + 1 and len(self.buffer) < self.max_buffered:
            self.buffer.append(inp)
        else:
            self.dropped += 1
        return True

    # ------------------------------------------------------------------------------------------------ handlers

    def _on_proposal(self, inp: ProposalReceived) -> list[Output]:
        p = inp.proposal
        if self._is_future_height(inp, p.height) or p.height != self.height or self.round < 0:
            return []
        if p.round < 0 or p.proposer != self.validators.get_proposer(p.height, p.round):
            return []
        if not (-1 <= p.valid_round < p.round) or p.value_id != self.id_of(p.value):
            return []
        self.keeper.process_sender(p.proposer, p.round, self.round)
        if p.round > self.round + self.max_future_rounds:
            return []
        in_round = self.proposals.setdefault(p.round, {})
        if p.value_id in in_round:
            return []
        if len(in_round) >= MAX_PROPOSALS_PER_ROUND:
            self.dropped += 1
            return []
        in_round[p.value_id] = p
        if p.value_id in self._validation_requested:
            return []
        self._validation_requested.add(p.value_id)
        return [ValidateValue(p.height, p.value_id, p.value)]

    def _on_vote(self, inp: PrevoteReceived | PrecommitReceived) -> list[Output]:
        v = inp.vote
        expected = VoteType.PREVOTE if isinstance(inp, PrevoteReceived) else VoteType.PRECOMMIT
        if v.type != expected or self._is_future_height(inp, v.height) or v.height != self.height or self.round < 0:
            return []
        res = self.keeper.process_vote(v, self.round)
        return [EvidenceFound(res.evidence)] if res.evidence else []

    def _on_timeout(self, t: TimeoutElapsed) -> list[Output]:
        if t.height != self.height or t.round != self.round or self.step == Step.DECIDED:
            return []
        if t.kind == TimeoutKind.PROPOSE and self.step == Step.PROPOSE:
            self._count("L57")  # L57: OnTimeoutPropose -> prevote nil
            return self._vote(VoteType.PREVOTE, None)
        if t.kind == TimeoutKind.PREVOTE and self.step == Step.PREVOTE:
            self._count("L61")  # L61: OnTimeoutPrevote -> precommit nil
            return self._vote(VoteType.PRECOMMIT, None)
        if t.kind == TimeoutKind.PRECOMMIT:
            self._count("L65")  # L65: OnTimeoutPrecommit -> StartRound(round + 1)
            return self._start_round(self.round + 1)
        return []

    def _on_value_ready(self, inp: ProposalValueReady) -> list[Output]:
        """Second half of L14-L19: getValue() answered; broadcast PROPOSAL(h, r, v, -1)."""
        if (inp.height, inp.round) != (self.height, self.round) or self.step != Step.PROPOSE or self._proposed:
            return []
        if not self.is_proposer(self.round):
            return []
        return self._propose(inp.value, -1)

    # ------------------------------------------------------------------------------------------------ actions

    def _start_round(self, round: int) -> list[Output]:
        """L11 StartRound(round)."""
        self.round = round
        self.step = Step.PROPOSE
        self._proposed = False
        self._l34_done = self._l36_done = self._l47_done = False
        out: list[Output] = [self._timer(TimeoutKind.PROPOSE)]
        if self.is_proposer(round):
            if self.valid_value is not None:  # L15-L16: re-propose the value we saw a polka for
                out += self._propose(self.valid_value, self.valid_round)
            else:  # L18: getValue()
                out.append(RequestValue(self.height, round))
        return out

    def _timer(self, kind: TimeoutKind) -> ScheduleTimeout:
        return ScheduleTimeout(kind, self.height, self.round, self.timeouts.compute_duration_ms(kind, self.round))

    def _propose(self, value: bytes, valid_round: int) -> list[Output]:
        """L19: broadcast PROPOSAL(h, round, proposal, validRound); our own value is valid by construction."""
        self._proposed = True
        vid = self.id_of(value)
        p = Proposal(self.height, self.round, value, vid, valid_round, self.address)
        self._validation_requested.add(vid)
        self.validity[vid] = True
        self.proposals.setdefault(self.round, {})[vid] = p
        self.keeper.process_sender(self.address, self.round, self.round)
        return [Broadcast(p)]

    def _vote(self, vote_type: VoteType, value_id: bytes | None) -> list[Output]:
        """Broadcast a vote for the current round, count it ourselves and advance the step."""
        self.step = Step.PREVOTE if vote_type == VoteType.PREVOTE else Step.PRECOMMIT
        if self.validators.get_power(self.address) == 0:
            return []
        v = Vote(vote_type, self.height, self.round, value_id, self.address)
        if self.count_own_votes:
            self.keeper.process_vote(v, self.round)
        return [Broadcast(v)]

    # ------------------------------------------------------------------------------------------------ rules

    def _run_rules(self) -> list[Output]:
        """Apply the highest-priority enabled rule until none is enabled."""
        out: list[Output] = []
        if self.round < 0:
            return out
        rules = (self._rule_l49, self._rule_l55, self._rule_l28, self._rule_l22, self._rule_l36, self._rule_l44,
                 self._rule_l34, self._rule_l47)
        for _ in range(MAX_RULES_PER_INPUT):
            if self.step == Step.DECIDED:
                return out
            for rule in rules:
                fired = rule()
                if fired is not None:
                    out += fired
                    break
            else:
                return out
        raise AssertionError("a consensus rule stayed enabled after firing")

    def _current_proposals(self) -> list[Proposal]:
        return list(self.proposals.get(self.round, {}).values())

    def _rule_l49(self) -> list[Output] | None:
        """L49: PROPOSAL(h, r, v, *) from proposer(h, r) and 2f+1 PRECOMMIT(h, r, id(v)), any round r, valid(v),
        decision still nil -> decide v."""
        for r in sorted(self.proposals):
            for p in self.proposals[r].values():
                if self.validity.get(p.value_id) and self.keeper.is_commit_for(r, p.value_id):
                    self._count("L49")
                    if r < self.round:
                        self._count("L49-past-round")
                    precommits = self.keeper.get_votes_for(r, VoteType.PRECOMMIT, p.value_id)
                    self.decision = Decide(self.height, r, p.value, precommits)
                    self.step = Step.DECIDED
                    return [self.decision]
        return None

    def _rule_l55(self) -> list[Output] | None:
        """L55: f+1 messages of a round r > round_p -> StartRound(r)."""
        r = self.keeper.get_skip_round(self.round)
        if r is None:
            return None
        self._count("L55")
        return self._start_round(r)

    def _rule_l28(self) -> list[Output] | None:
        """L28: PROPOSAL(h, round_p, v, vr) from the proposer and 2f+1 PREVOTE(h, vr, id(v)), 0 ≤ vr < round_p,
        step = propose -> prevote id(v) if valid(v) and (lockedRound ≤ vr or lockedValue = v), else nil."""
        if self.step != Step.PROPOSE:
            return None
        for p in self._current_proposals():
            vr = p.valid_round
            valid = self.validity.get(p.value_id)
            if vr < 0 or valid is None or not self.keeper.is_polka_for(vr, p.value_id):
                continue
            self._count("L28")
            if valid and (self.locked_round <= vr or self.locked_id == p.value_id):
                if self.locked_round >= 0 and self.locked_id != p.value_id:
                    self._count("L28-unlock")
                return self._vote(VoteType.PREVOTE, p.value_id)
            return self._vote(VoteType.PREVOTE, None)
        return None

    def _rule_l22(self) -> list[Output] | None:
        """L22: PROPOSAL(h, round_p, v, -1) from the proposer, step = propose -> prevote id(v) if valid(v) and
        (lockedRound = -1 or lockedValue = v), else nil."""
        if self.step != Step.PROPOSE:
            return None
        for p in self._current_proposals():
            valid = self.validity.get(p.value_id)
            if p.valid_round != -1 or valid is None:
                continue
            self._count("L22")
            if valid and (self.locked_round == -1 or self.locked_id == p.value_id):
                return self._vote(VoteType.PREVOTE, p.value_id)
            return self._vote(VoteType.PREVOTE, None)
        return None

    def _rule_l36(self) -> list[Output] | None:
        """L36: PROPOSAL(h, round_p, v, *) and 2f+1 PREVOTE(h, round_p, id(v)), valid(v), step ≥ prevote, for the
        first time -> if step = prevote: lock v and precommit id(v); in any case validValue = v."""
        if self._l36_done or self.step < Step.PREVOTE:
            return None
        for p in self._current_proposals():
            if not self.validity.get(p.value_id) or not self.keeper.is_polka_for(self.round, p.value_id):
                continue
            self._count("L36")
            self._l36_done = True
            out: list[Output] = []
            if self.step == Step.PREVOTE:
                self.locked_value, self.locked_id, self.locked_round = p.value, p.value_id, self.round
                out = self._vote(VoteType.PRECOMMIT, p.value_id)
            self.valid_value, self.valid_round = p.value, self.round
            return out
        return None

    def _rule_l44(self) -> list[Output] | None:
        """L44: 2f+1 PREVOTE(h, round_p, nil), step = prevote -> precommit nil."""
        if self.step != Step.PREVOTE or not self.keeper.is_polka_for(self.round, None):
            return None
        self._count("L44")
        return self._vote(VoteType.PRECOMMIT, None)

    def _rule_l34(self) -> list[Output] | None:
        """L34: 2f+1 PREVOTE(h, round_p, *), step = prevote, for the first time -> schedule timeoutPrevote."""
        if self._l34_done or self.step != Step.PREVOTE or not self.keeper.is_quorum_any(self.round, VoteType.PREVOTE):
            return None
        self._count("L34")
        self._l34_done = True
        return [self._timer(TimeoutKind.PREVOTE)]

    def _rule_l47(self) -> list[Output] | None:
        """L47: 2f+1 PRECOMMIT(h, round_p, *) for the first time -> schedule timeoutPrecommit."""
        if self._l47_done or not self.keeper.is_quorum_any(self.round, VoteType.PRECOMMIT):
            return None
        self._count("L47")
        self._l47_done = True
        return [self._timer(TimeoutKind.PRECOMMIT)]
