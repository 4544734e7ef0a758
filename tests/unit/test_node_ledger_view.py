"""The consensus shell's one view of the chain (docs/spec/consensus.md, "One view of the chain"), on the real node,
store and execution thread: while the worker thread has stored a block but the event loop has not delivered its
completion, every read the shell makes through the ledger port — tip, blocks, commits, committed transactions,
membership, validator sets — still answers for the parent; once the completion is delivered, all of them answer
for the new block. Reading the live store instead let a lagging node judge a decision against a parent that was
not its own and halt with a false "STATE DIVERGED"."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from qilian.consensus.timeouts import TimeoutConfig
from qilian.execution.block import compute_signed_tx_hashes, make_header
from qilian.node.config import NodeConfig, init_home
from qilian.node.consensus import ConsensusDriver, NodeLedger
from qilian.node.node import Node
from qilian.sdk.client import build_tx
from qilian.sdk.keys import load_key
from qilian.types.core import Block, ChainParams, Commit, Receipt, compute_tx_hash

TIMEOUTS = TimeoutConfig(propose_base_ms=200, propose_delta_ms=100, prevote_base_ms=100, prevote_delta_ms=100,
                         precommit_base_ms=100, precommit_delta_ms=100)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    init_home(tmp_path / "home", chain_id="view-chain", suite_name="ed25519", organisations=("org1",),
              params=ChainParams(block_interval_ms=5))
    return Node(NodeConfig(home=tmp_path / "home"))


def _block_one(node: Node, ledger: NodeLedger) -> tuple[Block, Commit, list[bytes]]:
    """Block 1 with three kv puts of the organisation's client, and a commit (stored as given: execution does not
    check it)."""
    client = load_key(node.config.home / "keys" / "org1-client.pem")
    txs = tuple(build_tx(client, "view-chain", "kv", "put", [f"k{i}", "v"], 50, nonce=i) for i in range(3))
    hashes = [compute_tx_hash(node.suite, t.body) for t in txs]
    parent = ledger.get_parent_info()
    header = make_header(node.rules, parent, parent.time_ms + 1, compute_signed_tx_hashes(node.suite, txs), None,
                         node.key.address)
    return Block(header, txs, None), Commit(1, 0, node.suite.hash(header.encode()), ()), hashes


def test_the_shells_view_moves_only_when_the_block_is_delivered(node: Node, tmp_path: Path) -> None:
    cfg = node.config
    driver = ConsensusDriver(node, None, TIMEOUTS, cfg.wal_path, cfg.signer_state_path)
    ledger = driver.ledger
    client = load_key(cfg.home / "keys" / "org1-client.pem")
    parent = ledger.get_parent_info()
    block, commit, hashes = _block_one(node, ledger)
    delivered: list[tuple[list[Receipt] | None, BaseException | None]] = []

    def views() -> tuple[object, ...]:
        p = ledger.get_parent_info()
        return (p.height, p.state_root, ledger.get_committed(hashes), ledger.get_block_bytes(1) is not None,
                ledger.get_commit(1) is not None, ledger.get_validators(3) is not None,
                p.get_member(client.public_key) is not None)

    async def scenario() -> None:
        before = views()
        assert before == (0, parent.state_root, set(), False, False, False, True)
        ledger.execute_and_store(block, commit, hashes, lambda r, e: delivered.append((r, e)))
        # Hold the event loop (so the completion cannot be delivered) until the worker's batch is in the store.
        deadline = time.monotonic() + 30
        while node.store.get_tip().height < 1:
            assert time.monotonic() < deadline, "the execution thread did not store block 1"
            time.sleep(0.001)
        assert not delivered
        assert views() == before, "the shell saw block 1 before it was told of it"
        while not delivered:
            await asyncio.sleep(0.001)
        receipts, error = delivered[0]
        assert error is None and receipts is not None and len(receipts) == 3
        after = views()
        assert after[0] == 1 and after[1] == node.store.get_tip().state_root != parent.state_root
        assert after[2:] == (set(hashes), True, True, True, True)

    try:
        asyncio.run(scenario())
    finally:
        driver.close()
        node.close()


def test_a_completion_delivered_after_the_node_closed_moves_nothing(node: Node) -> None:
    """Stopping while a block finishes: the driver waits for the block, releases the view, the store closes — and
    the completion the loop delivers afterwards must not reopen a view on the closed store (it logged
    "DB instance already closed" at every soak's end)."""
    cfg = node.config
    driver = ConsensusDriver(node, None, TIMEOUTS, cfg.wal_path, cfg.signer_state_path)
    block, commit, hashes = _block_one(node, driver.ledger)
    errors: list[dict[str, object]] = []
    delivered: list[object] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        driver.ledger.execute_and_store(block, commit, hashes, lambda r, e: delivered.append((r, e)))
        driver.close()
        node.close()
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert not errors, errors[0].get("exception")
    assert not delivered


def test_the_views_parent_carries_everything_the_nodes_parent_does(node: Node) -> None:
    """Same tip, same parent facts: the view's parent must hold every field the node's own parent holds (the block
    checks refuse what they cannot check — a parent without the evidence lookups made every block with evidence
    invalid), and the same values."""
    cfg = node.config
    driver = ConsensusDriver(node, None, TIMEOUTS, cfg.wal_path, cfg.signer_state_path)
    try:
        ours, nodes = driver.ledger.get_parent_info(), node.get_parent_info(node.get_tip())
        for f in dataclasses.fields(ours):
            a, b = getattr(ours, f.name), getattr(nodes, f.name)
            assert (a is None) == (b is None), f"the view's parent lacks {f.name}"
            if not callable(a):
                assert a == b, f.name
        client = load_key(cfg.home / "keys" / "org1-client.pem")
        assert ours.get_member is not None and nodes.get_member is not None
        assert ours.get_member(client.public_key) == nodes.get_member(client.public_key)
    finally:
        driver.close()
        node.close()
