"""Transaction rules, block validation and execution — the pure state transition."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from qilian.crypto import get_suite
from qilian.execution.block import (
    BlockInvalid,
    ParentInfo,
    check_block,
    check_commit,
    compute_empty_root,
    compute_signed_tx_hashes,
    compute_tx_hashes,
    execute_block,
    make_header,
)
from qilian.execution.rules import ChainRules, TxRejected, check_tx_static, check_tx_window
from qilian.mempool.pool import Mempool, MempoolFull, PoolEntry
from qilian.types.core import (
    PRECOMMIT,
    STATUS_FAILED,
    STATUS_OK,
    Block,
    ChainParams,
    Commit,
    CommitSig,
    Genesis,
    Member,
    Organisation,
    Transaction,
    TxBody,
    Validator,
    ValidatorSet,
    compute_block_id,
    compute_signed_tx_hash,
    compute_tx_hash,
    compute_vote_sign_bytes,
    sign_tx,
)

SUITE = get_suite("ed25519")


def _key(label: str) -> tuple[bytes, bytes]:
    sk = SUITE.private_key_from_seed(hashlib.sha256(label.encode()).digest())
    return sk, SUITE.get_public_key(sk)


VAL_SK, VAL_PK = _key("validator")
USER_SK, USER_PK = _key("user")
OBS_SK, OBS_PK = _key("observer")
OUT_SK, OUT_PK = _key("outsider")
VAL_ADDR = SUITE.compute_address(VAL_PK)

GENESIS = Genesis(
    chain_id="unit-chain",
    suite="ed25519",
    genesis_time_ms=1_700_000_000_000,
    organisations=(
        Organisation("org1", (Member("node0", VAL_PK, ("validator",)), Member("user", USER_PK, ("member",)),
                              Member("watch", OBS_PK, ("observer",)))),
    ),
    validators=ValidatorSet((Validator(VAL_ADDR, VAL_PK, 1),)),
    params=ChainParams(max_block_txs=10, tx_validity_blocks=100),
)
RULES = ChainRules.from_genesis(GENESIS, SUITE)


class DictState:
    def __init__(self) -> None:
        self.values: dict[tuple[str, bytes], bytes] = {}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.values.get((namespace, key))


def tx(sk: bytes = USER_SK, pk: bytes = USER_PK, method: str = "put", args: list | None = None, nonce: int = 1,
       expires_at: int = 50, chain_id: str = "unit-chain", to: str = "kv"):
    return sign_tx(SUITE, sk, TxBody(chain_id, pk, nonce, expires_at, to, method,
                                      args if args is not None else [b"k", b"v"]))


def genesis_parent() -> ParentInfo:
    return ParentInfo(0, b"", GENESIS.genesis_time_ms, b"\x00" * 32, compute_empty_root(SUITE), GENESIS.validators)


def sign_commit(height: int, block_id: bytes, sk: bytes = VAL_SK, addr: bytes = VAL_ADDR) -> Commit:
    sig = SUITE.sign(sk, compute_vote_sign_bytes("unit-chain", PRECOMMIT, height, 0, block_id))
    return Commit(height, 0, block_id, (CommitSig(addr, sig),))


def test_static_rules_name_the_problem() -> None:
    check_tx_static(RULES, tx(), 200)
    cases = [
        (tx(chain_id="other"), "wrong_chain"),
        (tx(sk=OUT_SK, pk=OUT_PK), "not_member"),
        (tx(sk=OBS_SK, pk=OBS_PK), "forbidden"),
        (tx(to="bank"), "unknown_target"),
        (tx(method="steal"), "unknown_method"),
    ]
    for t, code in cases:
        with pytest.raises(TxRejected) as exc:
            check_tx_static(RULES, t, 200)
        assert exc.value.code == code
    with pytest.raises(TxRejected) as exc:
        check_tx_static(RULES, tx(), GENESIS.params.max_tx_bytes + 1)
    assert exc.value.code == "too_large"


def test_replay_window() -> None:
    check_tx_window(RULES, tx(expires_at=10), 10)
    with pytest.raises(TxRejected, match="expired"):
        check_tx_window(RULES, tx(expires_at=9), 10)
    with pytest.raises(TxRejected, match="ahead"):
        check_tx_window(RULES, tx(expires_at=111), 10)


def test_execution_is_deterministic_and_failed_calls_change_nothing() -> None:
    txs = [tx(args=[b"a", b"1"], nonce=1), tx(args=[b"bad"], nonce=2), tx(args=[b"b", b"2"], nonce=3),
           tx(method="delete", args=[b"a"], nonce=4), tx(args=[b"", b"x"], nonce=5)]
    hashes = compute_tx_hashes(SUITE, txs)
    r1 = execute_block(RULES, DictState(), txs, hashes)
    r2 = execute_block(RULES, DictState(), txs, hashes)
    assert r1 == r2
    assert [r.status for r in r1.receipts] == [STATUS_OK, STATUS_FAILED, STATUS_OK, STATUS_OK, STATUS_FAILED]
    assert "2 arguments" in r1.receipts[1].error
    assert r1.receipts[1].events == ()
    assert r1.writes == {("kv", b"a"): None, ("kv", b"b"): b"2"}
    assert r1.receipts[3].result is True


def _block(parent: ParentInfo, txs: list, last_commit: Commit | None = None, time_ms: int | None = None):
    hashes = compute_tx_hashes(SUITE, txs)
    header = make_header(RULES, parent, time_ms or parent.time_ms + 1000, compute_signed_tx_hashes(SUITE, txs),
                         last_commit, VAL_ADDR)
    return Block(header, tuple(txs), last_commit), hashes


def test_block_validation_accepts_a_good_chain_and_names_each_broken_rule() -> None:
    p0 = genesis_parent()
    b1, h1 = _block(p0, [tx()])
    check_block(RULES, p0, b1, h1, lambda h: False)
    id1 = compute_block_id(SUITE, b1.header)
    res = execute_block(RULES, DictState(), b1.txs, h1)
    p1 = ParentInfo(1, id1, b1.header.time_ms, b"\x11" * 32, res.receipts_root, GENESIS.validators)
    c1 = sign_commit(1, id1)
    b2, h2 = _block(p1, [tx(nonce=2)], c1)
    check_block(RULES, p1, b2, h2, lambda h: False)

    def broken(block: Block, hashes: list[bytes], match: str, committed: bool = False) -> None:
        with pytest.raises(BlockInvalid, match=match):
            check_block(RULES, p1, block, hashes, lambda h: committed)

    broken(replace(b2, header=replace(b2.header, height=3)), h2, "does not follow")
    broken(replace(b2, header=replace(b2.header, prev_block_id=b"\x00" * 32)), h2, "parent")
    broken(replace(b2, header=replace(b2.header, time_ms=0)), h2, "before its parent")
    broken(replace(b2, header=replace(b2.header, state_root=b"\x00" * 32)), h2, "state root")
    broken(replace(b2, header=replace(b2.header, receipts_root=b"\x00" * 32)), h2, "receipts root")
    broken(replace(b2, header=replace(b2.header, txs_root=b"\x00" * 32)), h2, "transactions root")
    broken(replace(b2, header=replace(b2.header, proposer=b"\x01" * 20)), h2, "not a validator")
    broken(replace(b2, last_commit=None), h2, "lacks the commit")
    forged = Commit(1, 0, id1, (CommitSig(VAL_ADDR, b"\x00" * 64),))
    broken(replace(b2, last_commit=forged,
                   header=replace(b2.header, last_commit_hash=SUITE.hash(forged.encode()))), h2, "does not verify")
    broken(b2, h2, "already committed", committed=True)
    dup, hd = _block(p1, [tx(nonce=2), tx(nonce=2)], c1)
    broken(dup, hd, "duplicate")
    bad_sig = tx(nonce=9)
    bad_sig = type(bad_sig)(bad_sig.body, b"\x00" * 64)
    bs, hs = _block(p1, [bad_sig], c1)
    broken(bs, hs, "signature")
    outsider, ho = _block(p1, [tx(sk=OUT_SK, pk=OUT_PK)], c1)
    broken(outsider, ho, "not a member")
    too_many, hm = _block(p1, [tx(nonce=100 + i) for i in range(11)], c1)
    broken(too_many, hm, "more than 10")


def test_commit_needs_two_thirds_of_power_from_real_validators() -> None:
    sks = [_key(f"v{i}") for i in range(4)]
    vals = ValidatorSet(tuple(sorted((Validator(SUITE.compute_address(pk), pk, 1) for _, pk in sks),
                                     key=lambda v: v.address)))
    by_addr = {SUITE.compute_address(pk): sk for sk, pk in sks}
    bid = b"\x07" * 32
    sign_bytes = compute_vote_sign_bytes("c", PRECOMMIT, 5, 0, bid)

    def commit(addrs: list[bytes]) -> Commit:
        return Commit(5, 0, bid, tuple(CommitSig(a, SUITE.sign(by_addr[a], sign_bytes)) for a in addrs))

    addrs = [v.address for v in vals.validators]
    check_commit(SUITE, "c", vals, commit(addrs[:3]), bid, 5)
    with pytest.raises(BlockInvalid, match="more than 2/3"):
        check_commit(SUITE, "c", vals, commit(addrs[:2]), bid, 5)
    with pytest.raises(BlockInvalid, match="two signatures"):
        check_commit(SUITE, "c", vals, commit([addrs[0], addrs[0], addrs[1]]), bid, 5)
    with pytest.raises(BlockInvalid, match=r"chain|verify"):
        check_commit(SUITE, "other-chain", vals, commit(addrs[:3]), bid, 5)
    with pytest.raises(BlockInvalid, match="expected"):
        check_commit(SUITE, "c", vals, commit(addrs[:3]), b"\x08" * 32, 5)


def test_mempool_bounds_dedup_and_order() -> None:
    pool = Mempool(max_txs=3, max_bytes=10_000)
    entries = [PoolEntry(tx(nonce=i), bytes([i]) * 32, bytes([i + 100]) * 32, 100) for i in range(4)]
    assert pool.process_add(entries[0]) and not pool.process_add(entries[0])
    pool.process_add(entries[1])
    pool.process_add(entries[2])
    with pytest.raises(MempoolFull):
        pool.process_add(entries[3])
    assert [e.tx_hash for e in pool.get_batch(2, 10_000, lambda e: True)] == [entries[0].tx_hash,
                                                                             entries[1].tx_hash]
    assert [e.tx_hash for e in pool.get_batch(5, 10_000, lambda e: e is not entries[1])] == [
        entries[0].tx_hash, entries[2].tx_hash]
    assert pool.process_remove([entries[0].tx_hash, b"\x09" * 32]) == 1
    assert len(pool) == 2 and pool.total_bytes == 200
    small = Mempool(max_txs=100, max_bytes=150)
    small.process_add(entries[0])
    with pytest.raises(MempoolFull, match="bytes"):
        small.process_add(entries[1])


def test_mempool_keeps_the_first_signed_version_of_a_body_and_answers_by_signed_hash() -> None:
    """One body, two signatures: the pool holds the first; the second is found by neither hash (assembly then
    fetches the version a proposal names), and removing the body removes whichever version is held."""
    pool = Mempool()
    first = PoolEntry(tx(nonce=1), b"\x01" * 32, b"\xa1" * 32, 100)
    second = PoolEntry(replace(first.tx, signature=b"\x00" * 64), b"\x01" * 32, b"\xa2" * 32, 100)
    assert pool.process_add(first) and not pool.process_add(second)
    assert pool.get_signed(b"\xa1" * 32) is first and pool.get_signed(b"\xa2" * 32) is None
    assert pool.get(b"\x01" * 32) is first
    assert pool.process_remove([b"\x01" * 32]) == 1
    assert pool.get_signed(b"\xa1" * 32) is None and len(pool) == 0


def test_txs_root_commits_to_signatures_and_ids_stay_body_hashes() -> None:
    """Two valid signatures of one body: same ID (body hash), different signed hashes; a block built over one
    version does not validate with the other (the header's txs_root names the signature)."""
    a = tx()
    b = Transaction(a.body, b"\x00" * 64)
    assert compute_tx_hash(SUITE, a.body) == compute_tx_hash(SUITE, b.body)
    assert compute_signed_tx_hash(SUITE, a) != compute_signed_tx_hash(SUITE, b)
    assert compute_signed_tx_hash(SUITE, a) == SUITE.hash(a.encode())
    p0 = genesis_parent()
    block, hashes = _block(p0, [a])
    check_block(RULES, p0, block, hashes, lambda h: False)
    with pytest.raises(BlockInvalid, match="transactions root"):
        check_block(RULES, p0, replace(block, txs=(b,)), hashes, lambda h: False, {hashes[0]: True})
