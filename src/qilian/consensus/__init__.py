"""Pure Tendermint consensus core (Algorithm 1 of "The latest gossip on BFT consensus"); no IO of any kind.

See docs/spec/consensus.md."""

from qilian.consensus.core import Core, compute_value_id
from qilian.consensus.signer import SignerState, SignRefused, check_sign
from qilian.consensus.timeouts import TimeoutConfig
from qilian.consensus.types import (
    Broadcast,
    Decide,
    Evidence,
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
from qilian.consensus.votes import Threshold, ThresholdKind, VoteKeeper

__all__ = [
    "Broadcast", "Core", "Decide", "Evidence", "EvidenceFound", "Input", "Output", "PrecommitReceived",
    "PrevoteReceived", "Proposal", "ProposalReceived", "ProposalValueReady", "RequestValue", "ScheduleTimeout",
    "SignRefused", "SignerState", "Step", "Threshold", "ThresholdKind", "TimeoutConfig", "TimeoutElapsed",
    "TimeoutKind", "ValidateValue", "ValidatorSet", "ValidityAnswer", "Vote", "VoteKeeper", "VoteType",
    "check_sign", "compute_value_id",
]
