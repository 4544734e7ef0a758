"""Signer guard: the rule that keeps a correct validator from ever signing two conflicting messages.

The guard remembers the last signed (height, round, step) and the message itself. A message above it may be signed;
the identical message may be signed again (a retransmission after a restart); anything else at or below it is
refused. The caller must persist the returned state *before* releasing the signature — otherwise a crash between
the two could let the node sign a conflicting message after restart."""

from __future__ import annotations

from dataclasses import dataclass

from qilian.consensus.types import Proposal, Vote, VoteType

STEP_PROPOSAL = 0
STEP_PREVOTE = 1
STEP_PRECOMMIT = 2


class SignRefused(Exception):
    """Signing this message could make the validator equivocate."""


@dataclass(frozen=True, slots=True)
class SignerState:
    """What must be on disk before a signature leaves the node."""

    height: int = -1
    """Height of the last signed message (-1: nothing signed yet)."""
    round: int = -1
    """Round of the last signed message."""
    step: int = -1
    """Step of the last signed message: 0 proposal, 1 prevote, 2 precommit."""
    message: Proposal | Vote | None = None
    """The last signed message, for identical re-signing."""


def compute_step(message: Proposal | Vote) -> int:
    """Step a message belongs to."""
    if isinstance(message, Proposal):
        return STEP_PROPOSAL
    return STEP_PREVOTE if message.type == VoteType.PREVOTE else STEP_PRECOMMIT


def check_sign(state: SignerState, message: Proposal | Vote) -> SignerState:
    """Return the guard state to persist before signing `message`, or raise `SignRefused`.

    Invalid requests never change the state: the caller keeps the old one."""
    hrs = (message.height, message.round, compute_step(message))
    last = (state.height, state.round, state.step)
    if hrs > last:
        return SignerState(hrs[0], hrs[1], hrs[2], message)
    if hrs == last and message == state.message:
        return state
    raise SignRefused(f"refusing to sign {hrs} at or below last signed {last} with different content")
