"""The node shell's limits on what peers can make it hold, and the checks that related limits fit each other.

Every buffer a peer can fill is bounded by a named constant here (documented in docs/limits.md). Limits that
depend on each other — a block must fit a P2P frame, a proposal must be able to list a full block's transactions,
a WAL record must hold a block — are asserted at import, and a genesis whose parameters break them is refused when
the node starts (:func:`check_chain_params`), rather than discovered as a stall when the first big block arrives.
"""

from __future__ import annotations

from typing import Final

from qilian.execution.params import MAX_BLOCK_BYTES_BOUND
from qilian.p2p.messages import MAX_FRAME_BYTES, MAX_HASHES, MAX_TX_BYTES_ON_WIRE, MAX_TXS_PER_BATCH
from qilian.shell.wal import MAX_RECORD_BYTES
from qilian.types.codec import MAX_MESSAGE_BYTES
from qilian.types.core import MAX_BLOCK_TXS_BOUND, ChainParams

FUTURE_HEIGHT_WINDOW: Final = 2
"""Consensus messages are kept for heights tip + 1 … tip + this (tip + 2 arrives while block tip + 1 executes);
a message for a later height only tells the node it is behind (block sync)."""
ROUND_WINDOW: Final = 10
"""Votes and proposals more than this many rounds above the current round (above round 0 for a height not
started) are not stored, buffered or relayed; the core still learns the sender's round for the L55 round skip."""
MAX_FAR_ROUND_MESSAGES: Final = 8
"""Messages beyond ROUND_WINDOW taken from one validator per height (each only if it raises that validator's
highest round): enough for the round skip, never a way to grow the WAL without bound."""
MAX_VALUES_PER_SLOT: Final = 3
"""Distinct signed votes kept per (height, round, type, validator): an equivocator's extra values are evidence,
not storage (matches the core's MAX_VALUES_PER_VALIDATOR)."""
MAX_PROPOSALS_PER_ROUND: Final = 2
"""Proposals kept per (height, round), each from that round's proposer only (matches the core)."""
MAX_FUTURE_MESSAGES: Final = 4096
"""Verified consensus messages kept for heights this node has not started (fed to the core when it does)."""
MAX_HELD_PER_HEIGHT: Final = 4096
"""Signed messages of a height kept for re-sending to a (re)connecting peer and for anti-entropy."""
MAX_PENDING_EVIDENCE: Final = 1000
"""Verified evidence items waiting for a block (own detections and peers' gossip); the oldest goes first when
full. Kept in memory only: a restart forgets them, and a peer that still holds them re-sends them on reconnect."""
MAX_RELAY_SEEN: Final = 65_536
"""Hashes of relayed consensus messages remembered (each distinct message is relayed once)."""
ANTI_ENTROPY_S: Final = 2.0
"""A node that has not committed for this long re-sends what it holds of its height (own messages to every
peer, everything else to one peer in turn): repairs messages lost in a crash or a cut link."""
MAX_ANTI_ENTROPY_BATCH: Final = 512
"""Most messages re-sent to one peer per anti-entropy round (the newest)."""
FETCH_RETRY_S: Final = 0.5
"""Missing transactions of a proposal are asked of the sender first, then of every peer at this interval."""

BLOCK_FRAME_OVERHEAD: Final = 64 * 1024
"""Room in a frame besides the block itself: message framing, the commit, the other fields."""
MAX_COMMIT_ON_WIRE: Final = 1 << 20
"""Largest encoded commit in a sync answer (p2p.messages.BlockWithCommit)."""

# Related limits, checked against each other once, at import.
assert ChainParams().max_block_bytes + MAX_COMMIT_ON_WIRE + BLOCK_FRAME_OVERHEAD <= MAX_FRAME_BYTES, \
    "a maximum-size block with its commit must fit one P2P frame (block sync)"
assert ChainParams().max_block_txs <= MAX_HASHES, "a proposal must be able to list every transaction of a full block"
assert MAX_BLOCK_BYTES_BOUND + MAX_COMMIT_ON_WIRE + BLOCK_FRAME_OVERHEAD <= MAX_FRAME_BYTES, \
    "the largest block governance may allow (block.max_bytes) must fit one P2P frame with its commit"
assert MAX_BLOCK_TXS_BOUND <= MAX_HASHES, "a proposal must be able to list the most transactions governance allows"
assert ChainParams().max_tx_bytes <= MAX_TX_BYTES_ON_WIRE, "a maximum-size transaction must fit a gossip batch item"
assert MAX_FRAME_BYTES <= MAX_MESSAGE_BYTES, "the codec must decode any frame the transport accepts"
assert MAX_FRAME_BYTES <= MAX_RECORD_BYTES, "a WAL record must hold a maximum-size block"
assert MAX_TXS_PER_BATCH <= MAX_HASHES, "a fetch answer cannot carry more transactions than a request names"
assert MAX_PROPOSALS_PER_ROUND >= 2, "a second, conflicting proposal may be the one a quorum saw"
assert MAX_HELD_PER_HEIGHT >= MAX_ANTI_ENTROPY_BATCH


def check_chain_params(params: ChainParams) -> None:
    """Raise ValueError unless a genesis's limits fit the transport and the WAL (checked when a node starts)."""
    if params.max_block_bytes + MAX_COMMIT_ON_WIRE + BLOCK_FRAME_OVERHEAD > MAX_FRAME_BYTES:
        raise ValueError(f"genesis max_block_bytes {params.max_block_bytes} does not fit a P2P frame of "
                         f"{MAX_FRAME_BYTES} bytes with its commit")
    if params.max_block_txs > MAX_HASHES:
        raise ValueError(f"genesis max_block_txs {params.max_block_txs} is over the {MAX_HASHES} hashes a "
                         f"proposal can carry")
    if params.max_tx_bytes > MAX_TX_BYTES_ON_WIRE:
        raise ValueError(f"genesis max_tx_bytes {params.max_tx_bytes} is over the {MAX_TX_BYTES_ON_WIRE} bytes a "
                         f"gossiped transaction may have")
