"""Evidence of equivocation on chain: what makes an item valid in a block, and the state record it leaves.

A validator that signs two votes for one (height, round, kind) naming different blocks has broken the protocol, and
the two signed votes prove it to anyone. The consensus core detects it; the shell turns the pair into an
:class:`~qilian.types.core.Evidence` item, gossips it, and a proposer includes pending items in its block. Every
validator checks each item here (pure: the validator set of the evidence's height and the committed-evidence lookup
come in as functions), so a forged, foreign, stale or repeated item makes the block invalid.

A committed item is recorded in state (``sys:evidence``, keyed by its hash): the record is what "already committed"
is checked against, what ``GET /evidence`` lists and ``GET /state/sys:evidence/{hash}`` proves, and what governance
reads to act. Nothing is slashed: a consortium removes a validator by a governance vote (docs/governance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from qilian.crypto import merkle
from qilian.crypto.suite import Suite
from qilian.types.codec import encode_trusted
from qilian.types.core import (
    MAX_EVIDENCE_ON_WIRE,
    PRECOMMIT,
    PREVOTE,
    Evidence,
    ValidatorSet,
    Vote,
    compute_evidence_hash,
    compute_vote_sign_bytes,
)

EVIDENCE_NAMESPACE: Final = "sys:evidence"
"""State namespace of committed evidence: evidence hash → :func:`compute_evidence_record`."""
MAX_BLOCK_EVIDENCE: Final = 8
"""Most evidence items in one block. Each costs two signature checks at every validator, so the bound keeps a
block's evidence cheap (16 verifications) whatever a Byzantine proposer or gossiper sends."""
MAX_EVIDENCE_AGE_BLOCKS: Final = 1000
"""Evidence of height e may be committed in blocks e+1 … e+this. Older evidence is refused: every node can still
read the validator set of the window's heights, and the window bounds how long nodes keep pending items."""

assert MAX_BLOCK_EVIDENCE <= MAX_EVIDENCE_ON_WIRE, "a block's evidence must decode"


class EvidenceInvalid(ValueError):
    """An evidence item that may not go into the block at hand; the message names the rule."""


def make_evidence(first: Vote, second: Vote) -> Evidence:
    """The canonical evidence item of two conflicting votes, in either order (smaller block ID first)."""
    return Evidence(first, second) if first.block_id < second.block_id else Evidence(second, first)


def check_evidence_shape(evidence: Evidence) -> None:
    """Raise EvidenceInvalid unless the two votes conflict: one validator, one (height, round, kind), two different
    block IDs in canonical order. Needs no chain data."""
    a, b = evidence.vote_a, evidence.vote_b
    if a.kind not in (PREVOTE, PRECOMMIT):
        raise EvidenceInvalid(f"evidence votes are of unknown kind {a.kind}")
    if (a.kind, a.height, a.round, a.validator) != (b.kind, b.height, b.round, b.validator):
        raise EvidenceInvalid("evidence votes are not by one validator for one (height, round, kind)")
    if a.block_id == b.block_id:
        raise EvidenceInvalid("evidence names the same value twice: that is no equivocation")
    if a.block_id > b.block_id:
        raise EvidenceInvalid("evidence votes are not in canonical order (smaller block ID first)")


def is_evidence_due(evidence: Evidence, height: int) -> bool:
    """Whether an item may go into the block at ``height`` as far as its age goes: its height is earlier (a height
    still being decided has no set of facts to check it against yet) and within MAX_EVIDENCE_AGE_BLOCKS."""
    e = evidence.vote_a.height
    return 1 <= e < height and height - e <= MAX_EVIDENCE_AGE_BLOCKS


def check_evidence(suite: Suite, chain_id: str, evidence: Evidence, height: int,
                   get_validators_at: Callable[[int], ValidatorSet | None],
                   is_committed: Callable[[bytes], bool]) -> None:
    """Raise EvidenceInvalid unless ``evidence`` may be committed in the block at ``height``: conflicting votes
    (:func:`check_evidence_shape`), of an earlier height inside the age window, by a validator of that height's
    set, not committed before, both signatures valid. Cheap rules first; the two signature checks last."""
    check_evidence_shape(evidence)
    a, b = evidence.vote_a, evidence.vote_b
    if a.height >= height:
        raise EvidenceInvalid(f"evidence of height {a.height} cannot be committed before height {a.height + 1}")
    if not is_evidence_due(evidence, height):
        raise EvidenceInvalid(f"evidence of height {a.height} is too old for block {height} (window of "
                              f"{MAX_EVIDENCE_AGE_BLOCKS} blocks)")
    vset = get_validators_at(a.height)
    if vset is None:
        raise EvidenceInvalid(f"the validator set of height {a.height} is not known")
    validator = vset.get_by_address(a.validator)
    if validator is None:
        raise EvidenceInvalid(f"evidence against {a.validator.hex()}, which is not a validator of height {a.height}")
    if is_committed(compute_evidence_hash(suite, evidence)):
        raise EvidenceInvalid("evidence already committed in an earlier block")
    for vote in (a, b):
        sign_bytes = compute_vote_sign_bytes(chain_id, vote.kind, vote.height, vote.round, vote.block_id)
        if not suite.verify(validator.public_key, sign_bytes, vote.signature):
            raise EvidenceInvalid(f"evidence vote signature by {a.validator.hex()} does not verify")


def compute_evidence_root(suite: Suite, evidence: Sequence[Evidence]) -> bytes:
    """``evidence_hash`` of a header: the Merkle root of the items' canonical bytes, in block order."""
    return merkle.compute_root(suite.hash, [encode_trusted(e.to_wire()) for e in evidence])


def compute_evidence_record(evidence: Evidence, height: int) -> bytes:
    """The state value of a committed item: [committed at height, validator address, height, round, kind, block ID
    a, block ID b] — what a reader (or a governance proposal) needs without decoding the block."""
    a, b = evidence.vote_a, evidence.vote_b
    return encode_trusted([height, a.validator, a.height, a.round, a.kind, a.block_id, b.block_id])


def get_evidence_writes(suite: Suite, evidence: Sequence[Evidence], height: int) -> dict[tuple[str, bytes], bytes]:
    """The state writes recording a block's committed evidence."""
    return {(EVIDENCE_NAMESPACE, compute_evidence_hash(suite, e)): compute_evidence_record(e, height)
            for e in evidence}


__all__ = [
    "EVIDENCE_NAMESPACE",
    "MAX_BLOCK_EVIDENCE",
    "MAX_EVIDENCE_AGE_BLOCKS",
    "EvidenceInvalid",
    "check_evidence",
    "check_evidence_shape",
    "compute_evidence_record",
    "compute_evidence_root",
    "get_evidence_writes",
    "is_evidence_due",
    "make_evidence",
]
