"""Execution is deterministic whatever engine the store runs on: the same block sequence, executed and committed by
the node's own commit path over RocksDB and over LMDB, gives byte-identical state roots, receipts, stored blocks
and state — and ``verify-ledger`` (which re-executes from genesis in memory, trusting nothing stored) accepts
both chains. A read path that saw another engine's view of the state (a stale cache, a non-snapshot read, an
iteration order) would show here as a first differing height."""

from __future__ import annotations

import shutil
from pathlib import Path

from qilian.execution.block import compute_signed_tx_hashes, make_header
from qilian.node.config import NodeConfig, init_home
from qilian.node.ledger import verify_ledger
from qilian.node.node import Node
from qilian.sdk.client import build_tx
from qilian.sdk.keys import load_key
from qilian.types.core import (
    PRECOMMIT,
    Block,
    ChainParams,
    Commit,
    CommitSig,
    Transaction,
    compute_tx_hash,
    compute_vote_sign_bytes,
)

CHAIN = "engines-chain"
BLOCKS = 12
TXS_PER_BLOCK = 60


def _block_txs(client: object, height: int) -> list[Transaction]:
    """Puts that overwrite earlier keys, deletes of present and absent keys, and calls that fail."""
    txs = []
    for i in range(TXS_PER_BLOCK):
        n = height * TXS_PER_BLOCK + i
        if i % 10 == 7:
            call = ("delete", [f"k{(n * 7) % 97}"])
        elif i % 10 == 9:
            call = ("put", [f"k{n}"])  # wrong arity: a failed receipt, no writes
        else:
            call = ("put", [f"k{(n * 13) % 211}", f"v{n}-{height}"])
        txs.append(build_tx(client, CHAIN, "kv", call[0], list(call[1]), height + 10, nonce=n))  # type: ignore[arg-type]
    return txs


def test_rocksdb_and_lmdb_stores_give_identical_chains(tmp_path: Path) -> None:
    init_home(tmp_path / "rocksdb", chain_id=CHAIN, suite_name="ed25519", organisations=("org1",),
              params=ChainParams(block_interval_ms=5, max_block_txs=TXS_PER_BLOCK))
    shutil.copytree(tmp_path / "rocksdb", tmp_path / "lmdb")
    nodes = {e: Node(NodeConfig(home=tmp_path / e), engine=e) for e in ("rocksdb", "lmdb")}
    try:
        ref = nodes["rocksdb"]
        client = load_key(ref.config.home / "keys" / "org1-client.pem")
        last_commit: Commit | None = None
        for height in range(1, BLOCKS + 1):
            txs = _block_txs(client, height)
            hashes = [compute_tx_hash(ref.suite, t.body) for t in txs]
            parent = ref.get_parent_info(ref.get_tip())
            header = make_header(ref.rules, parent, parent.time_ms + 1000, compute_signed_tx_hashes(ref.suite, txs),
                                 last_commit, ref.key.address)
            block = Block(header, tuple(txs), last_commit)
            block_id = ref.suite.hash(header.encode())
            sig = ref.suite.sign(ref.key.private_key, compute_vote_sign_bytes(CHAIN, PRECOMMIT, height, 0, block_id))
            commit = Commit(height, 0, block_id, (CommitSig(ref.key.address, sig),))
            receipts = {e: n.process_apply_block(block, commit, hashes) for e, n in nodes.items()}
            assert receipts["rocksdb"] == receipts["lmdb"], f"receipts differ at height {height}"
            tips = {e: n.get_tip() for e, n in nodes.items()}
            assert tips["rocksdb"] == tips["lmdb"], f"state or receipts root differs after block {height}"
            for e, n in nodes.items():
                assert n.store.get_block_bytes(height) == block.encode(), e
                assert n.store.get_receipts_bytes(height) == ref.store.get_receipts_bytes(height), e
            last_commit = commit
        assert list(nodes["rocksdb"].store.iter_state_values()) == list(nodes["lmdb"].store.iter_state_values())
        assert any(r.status != 0 for r in receipts["rocksdb"]) and any(r.status == 0 for r in receipts["rocksdb"])
    finally:
        for n in nodes.values():
            n.close()
    for e in nodes:
        report = verify_ledger(tmp_path / e / "data")
        assert report.ok and report.checked == BLOCKS, (e, report.reason)
