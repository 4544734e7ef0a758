"""The governance index kept at commit (storage/store.py): validator-set change heights and governance
transaction positions — written in the block's own write transaction, backfilled for a database from before it,
and read in O(entries) by ``GET /gov/validators/path`` and ``GET /gov/history``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from qilian.node.node import compute_gov_positions
from qilian.storage.store import ChainStore, ChainTip
from qilian.types.core import Block, Commit
from tests.unit.test_execution import GENESIS, RULES, _block, genesis_parent, tx


def _chain(n: int) -> list[Block]:
    """n blocks whose headers name set A, except heights 4..6 (set B) and 9.. (set C); governance txs at 3 and 7."""
    blocks = []
    for h in range(1, n + 1):
        txs = [tx(nonce=10 * h)]
        if h in (3, 7):
            txs.append(replace(tx(nonce=10 * h + 1), body=replace(tx(nonce=10 * h + 1).body, to="gov")))
        b, _ = _block(replace(genesis_parent(), height=h - 1), txs)
        vh = b"\xaa" * 32 if h < 4 or 6 < h < 9 else b"\xbb" * 32 if h < 9 else b"\xcc" * 32
        blocks.append(replace(b, header=replace(b.header, validators_hash=vh)))
    return blocks


def _commit(store: ChainStore, blocks: list[Block], with_index: bool = True) -> None:
    for b in blocks:
        h = b.header.height
        store.process_commit_block(b, Commit(h, 0, b"\x00" * 32, ()), [], [], {}, {},
                                   ChainTip(h, b"\x01" * 32, h, b"\x02" * 32, b"\x03" * 32),
                                   compute_gov_positions(b) if with_index else ())


def _fresh(path: Path) -> ChainStore:
    store = ChainStore(path)
    store.process_init(GENESIS, ChainTip(0, b"", 0, b"\x02" * 32, b"\x03" * 32))
    return store


def test_the_index_names_every_set_change_and_governance_tx(tmp_path: Path) -> None:
    store = _fresh(tmp_path / "a")
    _commit(store, _chain(10))
    assert store.get_index_height() == 10
    with store.begin_snapshot() as snap:
        assert snap.get_validator_change_heights(10) == [4, 7, 9]
        assert snap.get_validator_change_heights(8) == [4, 7]
        assert list(snap.iter_gov_positions(1, 0, 10)) == [(3, 1), (7, 1)]
        assert list(snap.iter_gov_positions(3, 2, 10)) == [(7, 1)]
        assert list(snap.iter_gov_positions(1, 0, 6)) == [(3, 1)]
    store.close()


def test_a_database_from_before_the_index_is_backfilled(tmp_path: Path) -> None:
    store = _fresh(tmp_path / "b")
    blocks = _chain(10)
    _commit(store, blocks[:6], with_index=False)
    # As a database written before the index existed: no index table entries, no index meta keys.
    store.kv.write([(b"g", k, None) for k, _ in store.kv.iter_from(b"g", b"")]
                   + [(b"m", b"gov_index_height", None), (b"m", b"last_validators_hash", None)])
    assert store.get_index_height() == 0
    assert store.process_index_backfill(compute_gov_positions, batch=4) == 6
    _commit(store, blocks[6:])
    with store.begin_snapshot() as snap:
        assert snap.get_validator_change_heights(10) == [4, 7, 9]
        assert list(snap.iter_gov_positions(1, 0, 10)) == [(3, 1), (7, 1)]
    assert RULES.chain_id == GENESIS.chain_id
    store.close()
