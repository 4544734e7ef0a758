"""The signer guard's state on disk: written and synced before a proposal or vote signature is released.

It lives beside the node key (``home/signer/state``), not in the data directory, so wiping the data directory to
resync never lets the validator sign again at a height and round where it already signed something else."""

from __future__ import annotations

import os
from pathlib import Path

from qilian.consensus.signer import SignerState
from qilian.consensus.types import Proposal, Vote, VoteType
from qilian.types.codec import CodecError, decode_raw, encode_trusted


def _message_to_wire(m: Proposal | Vote | None) -> list[object] | None:
    if m is None:
        return None
    if isinstance(m, Proposal):
        return ["p", m.height, m.round, m.value, m.value_id, m.valid_round + 1, m.proposer]
    return ["v", int(m.type), m.height, m.round, m.value_id if m.value_id is not None else b"", m.validator]


def _message_from_wire(w: object) -> Proposal | Vote | None:
    if w is None:
        return None
    assert isinstance(w, list)
    if w[0] == "p":
        return Proposal(w[1], w[2], w[3], w[4], w[5] - 1, w[6])
    return Vote(VoteType(w[1]), w[2], w[3], w[4] or None, w[5])


def load_signer_state(path: Path) -> SignerState:
    """The persisted state, or the initial one if none was ever written. A corrupt file is an error: guessing
    could let the validator equivocate."""
    if not path.exists():
        return SignerState()
    try:
        w = decode_raw(path.read_bytes())
        return SignerState(w[0] - 1, w[1] - 1, w[2] - 1, _message_from_wire(w[3]))
    except (CodecError, IndexError, TypeError, ValueError, AssertionError) as exc:
        raise RuntimeError(f"signer state {path} is unreadable ({exc}); restore it — never delete it") from exc


def save_signer_state(path: Path, state: SignerState) -> None:
    """Atomically replace the state file and sync it (and its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    data = encode_trusted([state.height + 1, state.round + 1, state.step + 1, _message_to_wire(state.message)])
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
