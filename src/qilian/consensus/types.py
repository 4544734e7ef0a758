"""Messages, inputs and outputs of the consensus core.

Everything here is a frozen dataclass: the core consumes inputs and yields outputs (effects) that the shell (node or
simulator) executes. Values are opaque bytes; the core names them by their id (`Proposal.value_id`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Step(enum.IntEnum):
    """Step of a round; ordered as in the paper (propose < prevote < precommit)."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2
    DECIDED = 3


class VoteType(enum.IntEnum):
    """The two vote types of Tendermint."""

    PREVOTE = 1
    PRECOMMIT = 2


class TimeoutKind(enum.IntEnum):
    """The three timers of Algorithm 1."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


@dataclass(frozen=True, slots=True)
class Proposal:
    """PROPOSAL(h, r, v, vr) of the paper."""

    height: int
    """Height the proposal is for."""
    round: int
    """Round the proposal is for."""
    value: bytes
    """The proposed value (opaque to consensus)."""
    value_id: bytes
    """id(v): what votes refer to."""
    valid_round: int
    """vr: the round in which the proposer saw a polka for this value, or -1."""
    proposer: bytes
    """Address of the proposer; the core ignores proposals not from proposer(h, r)."""


@dataclass(frozen=True, slots=True)
class Vote:
    """PREVOTE or PRECOMMIT; signatures are checked by the shell before the vote reaches the core."""

    type: VoteType
    """Prevote or precommit."""
    height: int
    """Height voted at."""
    round: int
    """Round voted at."""
    value_id: bytes | None
    """id(v) voted for, or None for nil."""
    validator: bytes
    """Address of the voter."""


# ---------------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    """A proposal arrived from the network (already verified by the shell)."""

    proposal: Proposal
    """The proposal."""


@dataclass(frozen=True, slots=True)
class PrevoteReceived:
    """A prevote arrived from the network."""

    vote: Vote
    """The prevote."""


@dataclass(frozen=True, slots=True)
class PrecommitReceived:
    """A precommit arrived from the network."""

    vote: Vote
    """The precommit."""


@dataclass(frozen=True, slots=True)
class TimeoutElapsed:
    """A timer scheduled by `ScheduleTimeout` fired."""

    kind: TimeoutKind
    """Which timer."""
    height: int
    """Height it was scheduled for."""
    round: int
    """Round it was scheduled for."""


@dataclass(frozen=True, slots=True)
class ProposalValueReady:
    """Answer to `RequestValue`: the value this node proposes (getValue() of the paper)."""

    height: int
    """Height the value is for."""
    round: int
    """Round the value is for."""
    value: bytes
    """The value."""


@dataclass(frozen=True, slots=True)
class ValidityAnswer:
    """Answer to `ValidateValue`: valid(v) of the paper."""

    value_id: bytes
    """Which value."""
    valid: bool
    """Whether the application accepts it."""


Input = ProposalReceived | PrevoteReceived | PrecommitReceived | TimeoutElapsed | ProposalValueReady | ValidityAnswer


# --------------------------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Sign (through the signer guard, persisted first) and send this message to all validators."""

    message: Proposal | Vote
    """The proposal or vote; the core has already counted it itself (a vote: unless ``count_own_votes`` is off,
    then the shell feeds it back once signed)."""


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Start a timer; when it fires, feed back `TimeoutElapsed(kind, height, round)`."""

    kind: TimeoutKind
    """Which timer."""
    height: int
    """Height."""
    round: int
    """Round."""
    duration_ms: int
    """Duration in milliseconds (linear in the round, capped)."""


@dataclass(frozen=True, slots=True)
class RequestValue:
    """Ask the application for a value to propose; answer with `ProposalValueReady`."""

    height: int
    """Height."""
    round: int
    """Round."""


@dataclass(frozen=True, slots=True)
class ValidateValue:
    """Ask the application whether a proposed value is valid; answer with `ValidityAnswer`."""

    height: int
    """Height the value was proposed at."""
    value_id: bytes
    """id(v)."""
    value: bytes
    """The value."""


@dataclass(frozen=True, slots=True)
class Decide:
    """decision_p[h] = v (L49): commit this value, then call `Core.start_height(height + 1)`."""

    height: int
    """Height decided."""
    round: int
    """Round whose precommits decided it."""
    value: bytes
    """The decided value."""
    precommits: tuple[Vote, ...]
    """Precommits for id(v) in that round: > 2/3 of the voting power (the commit certificate)."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two conflicting votes by one validator for one (height, round, type): proof of equivocation."""

    first: Vote
    """The vote seen first."""
    second: Vote
    """The conflicting vote."""


@dataclass(frozen=True, slots=True)
class EvidenceFound:
    """Equivocation detected; the shell keeps the evidence for a later block."""

    evidence: Evidence
    """The evidence."""


Output = Broadcast | ScheduleTimeout | RequestValue | ValidateValue | Decide | EvidenceFound
