"""Receipts are consensus data: their text is ASCII composed by rules that depend on nothing but the input, a
block's receipts always decode, and deployments pay for their compilation."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from qilian.contracts import compute_deploy_fuel
from qilian.execution.block import MAX_BLOCK_RECEIPT_BYTES, MAX_FAILED_RECEIPT_BYTES
from qilian.execution.contracts import compute_contract_address
from qilian.execution.messages import MAX_RECEIPT_ERROR, compute_ascii_escaped, compute_receipt_error, quote
from qilian.types.core import STATUS_FAILED, STATUS_OK, Receipt

sys.path.insert(0, str(Path(__file__).parent))
from test_contracts_runtime import ADMIN, CLIENT, SUITE, DictState, _run_block


@given(st.text(max_size=3000))
def test_receipt_text_is_bounded_printable_ascii(text: str) -> None:
    out = compute_receipt_error(text)
    assert len(out) <= MAX_RECEIPT_ERROR and all(0x20 <= ord(c) < 0x7F for c in out)


@given(st.text(alphabet=st.characters(min_codepoint=0x100), min_size=1, max_size=40))
def test_repr_escaped_or_literal_gives_the_same_receipt_text(text: str) -> None:
    """Whether a CPython's Unicode tables call a character printable (kept literal by repr) or not (escaped by
    repr), the receipt text is the same — so receipts roots agree across interpreter versions."""
    literal = "bad name " + text
    escaped = "bad name " + "".join(compute_ascii_escaped(c) for c in text)
    assert compute_receipt_error(literal) == compute_receipt_error(escaped)


def test_quote_bounds_and_escapes_names() -> None:
    assert quote("put") == "'put'"
    assert quote("a'b") == "'a\\'b'"
    assert quote("x" * 100).endswith("'...") and len(quote("x" * 100)) < 80
    assert quote("\U0001f600") == "'\\U0001f600'"
    assert quote(b"raw") == "'<bytes>'"


def test_a_failed_receipt_fits_its_bound() -> None:
    worst = Receipt(b"\xff" * 32, STATUS_FAILED, "~" * MAX_RECEIPT_ERROR, 2**63 - 1, None, ())
    assert len(worst.encode()) <= MAX_FAILED_RECEIPT_BYTES


def test_unknown_method_names_are_escaped_in_receipts() -> None:
    state = DictState()
    (r,) = _run_block(state, [(CLIENT, "evidence", "r\u0378\U0001f600gister", [])], 1)
    assert r.status != STATUS_OK and r.error.isascii()
    assert "\\u0378" in r.error or "\\U0001f600" in r.error or "not_found" in r.error


BIG = "@export\ndef big(i):\n    return 'x' * 60000\n"


def test_block_receipt_budget_fails_later_calls_deterministically() -> None:
    state = DictState()
    addr = compute_contract_address(SUITE, ADMIN.public_key, "big")
    (dep,) = _run_block(state, [(ADMIN, "contracts", "deploy", ["big", BIG])], 1)
    assert dep.status == STATUS_OK, dep.error
    n = MAX_BLOCK_RECEIPT_BYTES // 60000 + 10
    receipts = _run_block(state, [(CLIENT, addr, "big", [i]) for i in range(n)], 2)
    ok = [r for r in receipts if r.status == STATUS_OK]
    failed = [r for r in receipts if r.status != STATUS_OK]
    assert ok and failed and receipts.index(failed[0]) == len(ok), "the budget cuts off a suffix"
    assert all("receipt budget" in r.error for r in failed)
    assert sum(len(r.encode()) for r in ok) <= MAX_BLOCK_RECEIPT_BYTES


def test_deployment_pays_for_its_compilation() -> None:
    state = DictState()
    (dep,) = _run_block(state, [(ADMIN, "contracts", "deploy", ["big", BIG])], 1)
    assert dep.status == STATUS_OK and dep.fuel_used >= compute_deploy_fuel(BIG) > 0
    bad = "@export\ndef f():\n    return ().__class__\n"
    (rej,) = _run_block(state, [(ADMIN, "contracts", "deploy", ["bad", bad])], 2)
    assert rej.status != STATUS_OK and rej.fuel_used >= compute_deploy_fuel(bad) > 0
