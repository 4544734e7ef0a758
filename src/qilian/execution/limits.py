"""Block size limits every validator checks on a received proposal or synced block — not only the proposer.

``check_block`` (execution/block.py) checks the transaction count; the encoded size of a block was enforced only by
the proposer that built it, so a Byzantine proposer could make every validator assemble, store and serve a block of
any size up to the P2P frame. These checks are pure and cheap; the node runs them before ``check_block``.
"""

from __future__ import annotations

from qilian.execution.block import BlockInvalid
from qilian.types.core import ChainParams


def check_block_limits(params: ChainParams, height: int, tx_count: int, block_bytes: int | None) -> None:
    """Raise BlockInvalid unless a block of ``tx_count`` transactions and ``block_bytes`` encoded bytes (None:
    not known yet — a proposal before assembly) fits the chain's limits."""
    if tx_count > params.max_block_txs:
        raise BlockInvalid(f"block {height} holds {tx_count} transactions, over the limit of {params.max_block_txs}")
    if block_bytes is not None and block_bytes > params.max_block_bytes:
        raise BlockInvalid(f"block {height} is {block_bytes} bytes, over the limit of {params.max_block_bytes}")


__all__ = ["check_block_limits"]
