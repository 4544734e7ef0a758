"""``qilian verify-ledger``: re-check a stored chain from genesis, trusting nothing in the database.

Every block is decoded from its stored bytes, checked as a child of the previous one (hashes, roots, commit
signatures, every transaction's signature and rules), re-executed from genesis into a fresh in-memory state, and
its stored receipts and the next header's state and receipts roots are compared with what re-execution gives.
At the end the stored state (the flat values the node executes against and every tree node under the tip's root)
is compared with the re-executed one. The first block that does not check out is named — which is what an auditor
needs after someone edits the database by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qilian.crypto import get_suite
from qilian.execution.block import (
    BlockInvalid,
    ParentInfo,
    check_block,
    check_commit,
    compute_empty_root,
    compute_tx_hashes,
    execute_block,
)
from qilian.execution.contracts import compute_genesis_writes
from qilian.execution.evidence import EVIDENCE_NAMESPACE
from qilian.execution.members import get_member, get_validator_sets
from qilian.execution.params import get_chain_params
from qilian.execution.rules import ChainRules
from qilian.state import MemoryNodeStore, StateError, StateTree
from qilian.storage.store import ChainStore, compute_value_key
from qilian.types.codec import CodecError, encode_trusted
from qilian.types.core import Block, ValidatorSet, compute_block_id


@dataclass(frozen=True)
class LedgerReport:
    """Outcome of a ledger walk."""

    ok: bool
    """True iff every block checked out."""
    checked: int
    """Blocks fully checked."""
    height: int
    """The stored tip height."""
    bad_height: int | None
    """First height that failed (None when ok)."""
    reason: str
    """Why it failed (empty when ok)."""


class _MemState:
    def __init__(self) -> None:
        self.values: dict[tuple[str, bytes], bytes] = {}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.values.get((namespace, key))


def _check_stored_state(store: ChainStore, hash_fn: Callable[[bytes], bytes], root: bytes,
                        expected: dict[tuple[str, bytes], bytes]) -> str:
    """The state the node executes against (flat values) and the state it proves from (tree nodes) must both be
    exactly what re-execution produced; an edit to either would otherwise go unnoticed until nodes diverge."""
    want = {compute_value_key(ns, k): v for (ns, k), v in expected.items()}
    have = dict(store.iter_state_values())
    if have != want:
        diff = sorted(set(have) ^ set(want)) or sorted(k for k in want if have.get(k) != want[k])
        return f"stored state values differ from re-execution (first differing key {diff[0][:40]!r})"
    try:
        count = StateTree(hash_fn, store).check_tree(root)
    except (StateError, LookupError) as exc:
        return f"stored state tree under the tip's root is damaged: {exc}"
    if count != len(want):
        return f"stored state tree holds {count} keys; re-execution gives {len(want)}"
    return ""


def verify_ledger(data_dir: Path, progress: Callable[[int, int], None] | None = None) -> LedgerReport:
    """Walk the chain in ``data_dir``; stop at the first block that fails."""
    store = ChainStore(data_dir, readonly=False)
    try:
        genesis = store.get_genesis()
        if genesis is None:
            return LedgerReport(False, 0, 0, None, "no genesis in the database")
        suite = get_suite(genesis.suite)
        rules = ChainRules.from_genesis(genesis, suite)
        tip = store.get_tip()
        state = _MemState()
        nodes = MemoryNodeStore()
        tree = StateTree(suite.hash, nodes)
        genesis_writes = compute_genesis_writes(genesis)
        genesis_root, genesis_nodes = tree.apply_writes(b"\x00" * 32, genesis_writes)
        nodes.put_nodes(genesis_nodes)
        state.values.update({k: v for k, v in genesis_writes.items() if v is not None})
        sets_by_height: dict[int, ValidatorSet] = {}  # the set signing each height (evidence is checked with it)
        def get_parent(height: int, block_id: bytes, time_ms: int, root: bytes, receipts_root: bytes,
                       last: ValidatorSet) -> ParentInfo:
            """Everything of a block's validity from the re-executed state of its parent: the sets that sign
            it and the next one, the set that signed the parent, and the membership of that height."""
            current, nxt = get_validator_sets(rules, state.get_state)
            sets_by_height[height + 1] = current
            return ParentInfo(height, block_id, time_ms, root, receipts_root, current, nxt, last,
                              lambda key: get_member(rules, state.get_state, key),
                              get_chain_params(genesis.params, state.get_state, height + 1), sets_by_height.get,
                              lambda h: state.get_state(EVIDENCE_NAMESPACE, h) is not None)

        parent = get_parent(0, b"", genesis.genesis_time_ms, genesis_root, compute_empty_root(suite),
                            genesis.validators)
        seen_txs: set[bytes] = set()
        checked = 0
        expected_height = 1
        for height, raw in store.iter_raw_blocks(1):
            def fail(reason: str, h: int = height, done: int = checked) -> LedgerReport:
                return LedgerReport(False, done, tip.height, h, reason)

            if height != expected_height:
                return fail(f"block {expected_height} is missing", expected_height)
            try:
                block = Block.decode(raw)
            except CodecError as exc:
                return fail(f"block {height} does not decode: {exc}")
            hashes = compute_tx_hashes(suite, block.txs)
            try:
                check_block(rules, parent, block, hashes, seen_txs.__contains__)
                commit_raw = store.get_commit(height)
                if commit_raw is None:
                    return fail(f"block {height} has no stored commit")
                block_id = compute_block_id(suite, block.header)
                check_commit(suite, genesis.chain_id, parent.validators, commit_raw, block_id, height)
            except (BlockInvalid, CodecError) as exc:
                return fail(f"block {height}: {exc}")
            for th in hashes:
                loc = store.get_tx_location(th)
                if loc is None or loc[0] != height:
                    return fail(f"block {height}: transaction index does not point at this block")
            result = execute_block(rules, state, block.txs, hashes, height, block.header.time_ms, block.evidence)
            stored = store.get_receipts_bytes(height)
            if stored != encode_trusted([r.to_wire() for r in result.receipts]):
                return fail(f"block {height}: stored receipts differ from re-execution")
            new_root, new_nodes = tree.apply_writes(parent.state_root, result.writes, height)
            nodes.put_nodes(new_nodes)
            for k, v in result.writes.items():
                if v is None:
                    state.values.pop(k, None)
                else:
                    state.values[k] = v
            seen_txs.update(hashes)
            parent = get_parent(height, block_id, block.header.time_ms, new_root, result.receipts_root,
                                parent.validators)
            checked += 1
            expected_height += 1
            if progress is not None:
                progress(height, tip.height)
        if checked != tip.height:
            return LedgerReport(False, checked, tip.height, checked + 1, f"block {checked + 1} is missing")
        if tip.height and (tip.state_root != parent.state_root or tip.receipts_root != parent.receipts_root
                           or tip.block_id != parent.block_id):
            return LedgerReport(False, checked, tip.height, tip.height,
                                f"stored chain tip does not match re-execution of block {tip.height}")
        problem = _check_stored_state(store, suite.hash, tip.state_root, state.values)
        if problem:
            return LedgerReport(False, checked, tip.height, tip.height, problem)
        return LedgerReport(True, checked, tip.height, None, "")
    finally:
        store.close()


__all__ = ["LedgerReport", "verify_ledger"]
