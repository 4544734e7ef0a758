"""Attacks on the block's memory of parent-state reads (``Overlay``): a read remembered before a write must never
be served after it, and a failed transaction's write must never leak through it. Executed with the production
code, the same transactions give the same receipts whether they share one block or each has its own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from qilian.execution.block import execute_block
from qilian.execution.chain import ChainRules
from qilian.execution.contracts import compute_contract_address
from qilian.types.core import STATUS_OK, compute_tx_hash

sys.path.insert(0, str(Path(__file__).parent.parent / "vectors"))
from block_corpus import ADMIN, CLIENT, GENESIS, SUITE, _call, _State  # type: ignore[import-not-found]

PROBE = '''h = Hash()


@export
def read(k):
    return h[k]


@export
def write(k, v):
    h[k] = v
    return v


@export
def write_then_fail(k, v):
    h[k] = v
    assert False, "undone"
'''
BIG = "x" * 5000  # over the memo's value limit: read again each time
STEPS: list[tuple[str, list[Any], Any]] = [  # (method, args, expected result; "fail" = the call fails)
    ("read", ["k"], None), ("write_then_fail", ["k", "leak"], "fail"), ("read", ["k"], None),
    ("write", ["k", "one"], "one"), ("read", ["k"], "one"), ("write_then_fail", ["k", "leak"], "fail"),
    ("read", ["k"], "one"), ("write", ["b", BIG], BIG), ("read", ["b"], BIG),
    ("write_then_fail", ["b", "leak"], "fail"), ("read", ["b"], BIG),
]


def _run(blocks: list[list[Any]], state: _State, rules: ChainRules, first_height: int) -> list[Any]:
    receipts = []
    for height, txs in enumerate(blocks, start=first_height):
        res = execute_block(rules, state, txs, [compute_tx_hash(SUITE, tx.body) for tx in txs], height,
                            GENESIS.genesis_time_ms + 1000 * height)
        for key, value in res.writes.items():
            if value is None:
                state.values.pop(key, None)
            else:
                state.values[key] = value
        receipts += res.receipts
    return receipts


def _outcomes(one_block: bool) -> list[Any]:
    rules, state = ChainRules.from_genesis(GENESIS, SUITE), _State()
    deployed = _run([[_call(ADMIN, "contracts", "deploy", ["memo", PROBE], 1)]], state, rules, 1)
    assert deployed[0].status == STATUS_OK, deployed[0].error
    probe = compute_contract_address(SUITE, ADMIN.public_key, "memo")
    txs = [_call(CLIENT, probe, m, a, 10 + i) for i, (m, a, _) in enumerate(STEPS)]
    # One block: the first read of "k" is remembered, then written over and undone inside the block. One block per
    # transaction: every read after a write finds the value in the parent state, and is remembered there.
    blocks = [txs] if one_block else [[tx] for tx in txs]
    return [("fail" if r.status != STATUS_OK else r.result) for r in _run(blocks, state, rules, 2)]


def test_a_blocks_remembered_reads_never_serve_a_later_or_undone_write() -> None:
    expected = [want for _m, _a, want in STEPS]
    assert _outcomes(one_block=True) == expected
    assert _outcomes(one_block=False) == expected
