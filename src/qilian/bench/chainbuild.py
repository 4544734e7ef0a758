"""A chain of any size in bounded time: blocks committed straight into a one-validator node's store by the node's
own commit path (execution, state tree, one store batch per block), signed by its validator key — no consensus
and no network, so a benchmark or a test can start from a chain of a million transactions built in minutes.

The blocks are real: every one passes ``check_block`` on any node of the chain (the validator's commit, the
client's signatures, the replay window), so a node that block-syncs or state-syncs from this chain checks them as
it would any other."""

from __future__ import annotations

from collections.abc import Sequence

from qilian.execution.block import compute_signed_tx_hashes, make_header
from qilian.node.node import Node
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.core import (
    PRECOMMIT,
    Block,
    Commit,
    CommitSig,
    Transaction,
    compute_tx_hash,
    compute_vote_sign_bytes,
)

BLOCK_TIME_MS = 1000
"""Block time step of a built chain."""


class ChainBuilder:
    """Appends blocks to ``node``'s chain; ``node``'s key must be the chain's only validator."""

    def __init__(self, node: Node):
        if node.genesis.validators.get_by_address(node.key.address) is None or len(
                node.genesis.validators.validators) != 1:
            raise ValueError("a chain builder needs a one-validator chain whose validator key the node holds")
        self.node = node
        tip = node.get_tip()
        self.last_commit: Commit | None = node.store.get_commit(tip.height) if tip.height else None
        self._nonce = 0

    def make_put_txs(self, client: KeyPair, count: int, value_bytes: int = 100, key_prefix: str = "k") -> list[
            Transaction]:
        """``count`` kv.put transactions of fresh keys (each a new state entry)."""
        node = self.node
        h = node.get_tip().height
        txs = []
        for _ in range(count):
            self._nonce += 1
            n = self._nonce
            value = (n.to_bytes(8, "big") * (value_bytes // 8 + 1))[:value_bytes]
            txs.append(build_tx(client, node.genesis.chain_id, "kv", "put", [f"{key_prefix}{n}".encode(), value],
                                h + 500, nonce=n))
        return txs

    def process_block(self, txs: Sequence[Transaction], time_ms: int | None = None) -> Block:
        """Make, sign, execute and store the next block with ``txs``."""
        node = self.node
        suite = node.suite
        parent = node.get_parent_info(node.get_tip())
        header = make_header(node.rules, parent, parent.time_ms + BLOCK_TIME_MS if time_ms is None else time_ms,
                             compute_signed_tx_hashes(suite, txs), self.last_commit, node.key.address)
        block = Block(header, tuple(txs), self.last_commit)
        block_id = suite.hash(header.encode())
        sig = suite.sign(node.key.private_key,
                         compute_vote_sign_bytes(node.genesis.chain_id, PRECOMMIT, header.height, 0, block_id))
        commit = Commit(header.height, 0, block_id, (CommitSig(node.key.address, sig),))
        node.process_apply_block(block, commit, [compute_tx_hash(suite, t.body) for t in txs])
        self.last_commit = commit
        return block


__all__ = ["BLOCK_TIME_MS", "ChainBuilder"]
