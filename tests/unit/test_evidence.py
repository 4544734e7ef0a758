"""Evidence on chain: a block's equivocation proofs are checked by every validator, and a forged, foreign, stale,
repeated or mis-committed item makes the block invalid; a valid one is recorded in state when the block executes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import tests.unit.test_execution as base
from qilian.execution.block import (
    BlockInvalid,
    ParentInfo,
    check_block,
    compute_signed_tx_hashes,
    compute_tx_hashes,
    execute_block,
    make_header,
)
from qilian.execution.evidence import (
    EVIDENCE_NAMESPACE,
    MAX_BLOCK_EVIDENCE,
    MAX_EVIDENCE_AGE_BLOCKS,
    compute_evidence_record,
    make_evidence,
)
from qilian.types.core import (
    PRECOMMIT,
    PREVOTE,
    Block,
    Evidence,
    ValidatorSet,
    Vote,
    compute_block_id,
    compute_evidence_hash,
    compute_vote_sign_bytes,
)

SUITE, RULES, VAL_SK, VAL_ADDR = base.SUITE, base.RULES, base.VAL_SK, base.VAL_ADDR


def vote(block_id: bytes, height: int = 1, round_: int = 0, kind: int = PRECOMMIT, sk: bytes = VAL_SK,
         addr: bytes = VAL_ADDR) -> Vote:
    sig = SUITE.sign(sk, compute_vote_sign_bytes("unit-chain", kind, height, round_, block_id))
    return Vote(kind, height, round_, block_id, addr, sig)


def evidence(height: int = 1, round_: int = 0, kind: int = PRECOMMIT, ids: tuple[bytes, bytes] = (b"\x01" * 32, b""),
             sk: bytes = VAL_SK, addr: bytes = VAL_ADDR) -> Evidence:
    return make_evidence(vote(ids[0], height, round_, kind, sk, addr), vote(ids[1], height, round_, kind, sk, addr))


def chain(committed: frozenset[bytes] = frozenset(), height: int = 1) -> ParentInfo:
    """The parent (block ``height``) of the block under test, able to check evidence."""
    return ParentInfo(height, b"\x05" * 32, base.GENESIS.genesis_time_ms + 1000, b"\x00" * 32,
                      base.compute_empty_root(SUITE), base.GENESIS.validators,
                      get_validators_at=lambda h: base.GENESIS.validators if 1 <= h <= height + 1 else None,
                      is_evidence_committed=committed.__contains__)


def block_with(parent: ParentInfo, items: tuple[Evidence, ...], header_items: tuple[Evidence, ...] | None = None
               ) -> tuple[Block, list[bytes]]:
    txs = [base.tx(nonce=7)]
    commit = base.sign_commit(parent.height, parent.block_id)
    header = make_header(RULES, parent, parent.time_ms + 1000, compute_signed_tx_hashes(SUITE, txs), commit,
                         VAL_ADDR, items if header_items is None else header_items)
    return Block(header, tuple(txs), commit, items), compute_tx_hashes(SUITE, txs)


def test_valid_evidence_passes_and_is_recorded_in_state() -> None:
    parent = chain()
    ev = evidence()
    assert ev.vote_a.block_id == b"" and ev.vote_b.block_id == b"\x01" * 32  # canonical order
    block, hashes = block_with(parent, (ev, evidence(kind=PREVOTE)))
    check_block(RULES, parent, block, hashes, lambda h: False)
    assert Block.decode(block.encode()) == block
    res = execute_block(RULES, base.DictState(), block.txs, hashes, 2, block.header.time_ms, block.evidence)
    assert res.writes[(EVIDENCE_NAMESPACE, compute_evidence_hash(SUITE, ev))] == compute_evidence_record(ev, 2)


def test_empty_evidence_needs_no_chain_lookups() -> None:
    parent = replace(chain(), get_validators_at=None, is_evidence_committed=None)
    block, hashes = block_with(parent, ())
    check_block(RULES, parent, block, hashes, lambda h: False)


@pytest.mark.parametrize(("name", "item", "match"), [
    ("bad signature", replace(evidence(), vote_b=replace(evidence().vote_b, signature=b"\x00" * 64)),
     "does not verify"),
    ("signed by another key", evidence(sk=base.USER_SK), "does not verify"),
    ("not a validator", evidence(sk=base.USER_SK, addr=SUITE.compute_address(base.USER_PK)), "not a validator"),
    ("same value twice", Evidence(vote(b"\x01" * 32), vote(b"\x01" * 32)), "same value twice"),
    ("not in canonical order", Evidence(vote(b"\x02" * 32), vote(b"\x01" * 32)), "canonical order"),
    ("different rounds", Evidence(vote(b"", round_=0), vote(b"\x01" * 32, round_=1)), "one \\(height, round"),
    ("different kinds", Evidence(vote(b"", kind=PREVOTE), vote(b"\x01" * 32)), "one \\(height, round"),
    ("unknown kind", evidence(kind=3), "unknown kind"),
    ("of the block's own height", evidence(height=2), "cannot be committed before"),
])
def test_forged_evidence_makes_the_block_invalid(name: str, item: Evidence, match: str) -> None:
    parent = chain()
    block, hashes = block_with(parent, (item,))
    with pytest.raises(BlockInvalid, match=match):
        check_block(RULES, parent, block, hashes, lambda h: False)


def test_stale_repeated_and_uncommitted_evidence_makes_the_block_invalid() -> None:
    ev = evidence()
    parent = chain()

    def broken(p: ParentInfo, block: Block, hashes: list[bytes], match: str) -> None:
        with pytest.raises(BlockInvalid, match=match):
            check_block(RULES, p, block, hashes, lambda h: False)

    old = chain(height=1 + MAX_EVIDENCE_AGE_BLOCKS)
    broken(old, *block_with(old, (ev,)), "too old")
    committed = chain(frozenset({compute_evidence_hash(SUITE, ev)}))
    broken(committed, *block_with(committed, (ev,)), "already committed")
    broken(parent, *block_with(parent, (ev, ev)), "same evidence twice")
    broken(parent, *block_with(parent, (ev,), header_items=()), "evidence_hash")
    many = tuple(evidence(round_=r) for r in range(MAX_BLOCK_EVIDENCE + 1))
    broken(parent, *block_with(parent, many), "over the limit")
    unknown = replace(parent, get_validators_at=lambda h: None)
    broken(unknown, *block_with(unknown, (ev,)), "not known")
    blind = replace(parent, is_evidence_committed=None)
    broken(blind, *block_with(blind, (ev,)), "cannot be checked")
    other_set = replace(parent, get_validators_at=lambda h: ValidatorSet(()))
    broken(other_set, *block_with(other_set, (ev,)), "not a validator of height 1")


def test_evidence_is_part_of_the_block_id() -> None:
    parent = chain()
    with_ev, _ = block_with(parent, (evidence(),))
    without, _ = block_with(parent, ())
    assert with_ev.header.evidence_hash != without.header.evidence_hash
    assert compute_block_id(SUITE, with_ev.header) != compute_block_id(SUITE, without.header)


def test_committed_evidence_is_listed_newest_first_by_the_read_side(tmp_path: Path) -> None:
    """``GET /evidence`` reads the ``sys:evidence`` records of the store's state (what execution wrote)."""
    from qilian.api.readside import ReadSide
    from qilian.storage.store import ChainStore, ChainTip

    older, newer = evidence(round_=0), evidence(round_=1, kind=PREVOTE)
    store = ChainStore(tmp_path / "data")
    try:
        writes: dict[tuple[str, bytes], bytes | None] = {
            (EVIDENCE_NAMESPACE, compute_evidence_hash(SUITE, older)): compute_evidence_record(older, 2),
            (EVIDENCE_NAMESPACE, compute_evidence_hash(SUITE, newer)): compute_evidence_record(newer, 5),
            ("sys:other", b"x"): b"not evidence",
        }
        store.process_init(base.GENESIS, ChainTip(0, b"", 0, b"\x00" * 32, b"\x00" * 32), writes, {})
        doc = ReadSide(store, SUITE, base.GENESIS).get_evidence(10)
        assert doc["total"] == 2
        assert [i["committed_at"] for i in doc["items"]] == [5, 2]
        first = doc["items"][0]
        assert first["hash"] == compute_evidence_hash(SUITE, newer).hex()
        assert (first["validator"], first["height"], first["round"], first["kind"]) == (VAL_ADDR.hex(), 1, 1,
                                                                                       "prevote")
        assert first["block_ids"] == ["", "01" * 32]
        assert ReadSide(store, SUITE, base.GENESIS).get_evidence(1)["items"] == [first]
        assert ReadSide(store, SUITE, base.GENESIS).get_evidence(10, b"\x09" * 20)["items"] == []
    finally:
        store.close()
