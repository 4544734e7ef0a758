"""Jepsen finding: a garbage signature was admitted because a refused transaction's verdict was cached by body hash.

A real Node over a real home (a real store, verifier threads), no consensus running: fill the mempool, relay a
valid transaction as a peer would (refused: full — but its signature was verified), drain the mempool, send the
same body with 64 random bytes as its signature. It must be refused: a verdict is about the signed bytes, never
about the body alone."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from qilian.node.config import NodeConfig, init_home
from qilian.node.node import Node, compute_sig_key
from qilian.sdk.client import build_tx
from qilian.sdk.keys import load_key
from qilian.types.core import Transaction, compute_tx_hash


def test_garbage_signature_of_a_known_body_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, chain_id="sig-chain", suite_name="ed25519", organisations=("org1",))
    node = Node(NodeConfig(home=home, mempool_max_txs=1))
    key = load_key(home / "keys" / "org1-client.pem")
    try:
        first = build_tx(key, "sig-chain", "kv", "put", ["a", "1"], 100)
        valid = build_tx(key, "sig-chain", "kv", "put", ["b", "2"], 100)
        forged = Transaction(valid.body, os.urandom(64))

        async def scenario() -> list[str]:
            statuses = []
            for tx in (first, valid):  # the second finds the mempool full, after its signature was verified (as
                # relayed by a peer: a client's batch is refused before any check when the mempool is full)
                res = await node.process_submit_batch([tx.encode()], from_client=tx is first)
                statuses.append(res.results[0][1])
            th_first = compute_tx_hash(node.suite, first.body)
            assert node.mempool.process_remove([th_first]) == 1  # drained (as a commit would)
            res = await node.process_submit_batch([forged.encode()])
            statuses.append(res.results[0][1])
            res = await node.process_submit_batch([valid.encode()])  # the genuine one is still welcome
            statuses.append(res.results[0][1])
            return statuses

        assert asyncio.run(scenario()) == ["accepted", "mempool_full", "bad_signature", "accepted"]
        th = compute_tx_hash(node.suite, valid.body)
        assert node.is_sig_verified(valid, th) and not node.is_sig_verified(forged, th)
        # A block carrying the forged copy finds no cached verdict for it: check_block verifies it itself.
        assert node.get_sig_checked([forged], [th]) == {}
        assert compute_sig_key(th, forged) != compute_sig_key(th, valid)
    finally:
        node.close()
