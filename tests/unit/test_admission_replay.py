"""A client's transactions are refused as already on chain — also when their block lands while their signatures
are being verified — and the second look at the chain is made only when a block did land.

A real Node over a real home (no consensus running); block 1 is executed and stored by the node's own commit
path in the middle of the batch's verification."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from qilian.execution.block import compute_signed_tx_hashes, make_header
from qilian.node.config import NodeConfig, init_home
from qilian.node.consensus import NodeLedger
from qilian.node.node import Node
from qilian.sdk.client import build_tx
from qilian.sdk.keys import load_key
from qilian.types.core import Block, Commit, Transaction, compute_tx_hash


@pytest.fixture
def node(tmp_path: Path) -> Node:
    init_home(tmp_path / "home", chain_id="replay-chain", suite_name="ed25519", organisations=("org1",))
    return Node(NodeConfig(home=tmp_path / "home"))


def _txs(node: Node, n: int) -> list[Transaction]:
    client = load_key(node.config.home / "keys" / "org1-client.pem")
    return [build_tx(client, "replay-chain", "kv", "put", [f"k{i}", "v"], 50, nonce=i) for i in range(n)]


def _store_block_one(node: Node, txs: list[Transaction]) -> None:
    """Execute and store block 1 holding ``txs`` through the node's commit path (as consensus would)."""
    with ThreadPoolExecutor(1) as pool:
        ledger = NodeLedger(node, pool)
        parent = ledger.get_parent_info()
        ledger.close()
    header = make_header(node.rules, parent, parent.time_ms + 1, compute_signed_tx_hashes(node.suite, tuple(txs)),
                         None, node.key.address)
    block = Block(header, tuple(txs), None)
    node.process_execute_and_store(block, Commit(1, 0, node.suite.hash(header.encode()), ()),
                                   [compute_tx_hash(node.suite, t.body) for t in txs])


def _count_lookups_after_verification(node: Node, during: Callable[[], None] = lambda: None) -> list[int]:
    """Count the store's committed-transaction lookups made once the batch's signatures are verified (the first
    look, before verification, may read the live store too); ``during`` runs as the verification ends."""
    calls: list[int] = []
    verified: list[bool] = []
    lookup, verify = node.store.get_committed, node.process_verify_many

    def counting(hashes: Any) -> set[bytes]:
        if verified:
            calls.append(1)
        return lookup(hashes)

    async def verifying(*args: Any, **kwargs: Any) -> dict[bytes, bool]:
        verdicts = await verify(*args, **kwargs)
        during()
        verified.append(True)
        return verdicts

    node.store.get_committed = counting  # type: ignore[method-assign]
    node.process_verify_many = verifying  # type: ignore[method-assign]
    return calls


def test_a_transaction_whose_block_lands_during_its_verification_is_refused(node: Node) -> None:
    txs = _txs(node, 3)
    # The first one reaches the chain while the batch is verified (another node proposed it).
    calls = _count_lookups_after_verification(node, lambda: _store_block_one(node, txs[:1]))
    try:
        result = asyncio.run(node.process_submit_batch([t.encode() for t in txs]))
        assert [r[1] for r in result.results] == ["known", "accepted", "accepted"]
        assert len(node.mempool) == 2 and node.store.get_tip().height == 1
        assert calls, "a block landed: the chain must be looked at again"
        # Sent again, now that it is on chain: refused by the first look, before any verification.
        again = asyncio.run(node.process_submit_batch([txs[0].encode()]))
        assert [r[1] for r in again.results] == ["committed"]
    finally:
        node.close()


def test_no_second_look_when_no_block_landed(node: Node) -> None:
    txs = _txs(node, 3)
    _store_block_one(node, txs[:1])
    calls = _count_lookups_after_verification(node)
    try:
        result = asyncio.run(node.process_submit_batch([t.encode() for t in txs]))
        assert [r[1] for r in result.results] == ["committed", "accepted", "accepted"]
        assert not calls, "the tip did not move: the first look at the chain stands"
    finally:
        node.close()
