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
from typing import Any

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
from qilian.storage.store import ChainStore, compute_value_key, split_value_key
from qilian.types.codec import CodecError
from qilian.types.core import Block, Genesis, ValidatorSet, compute_block_id


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
    """Walk the chain in ``data_dir``; stop at the first block that fails. A store made by state sync is checked
    from its snapshot (:func:`_verify_from_snapshot`)."""
    store = ChainStore(data_dir, readonly=False)
    try:
        genesis = store.get_genesis()
        if genesis is None:
            return LedgerReport(False, 0, 0, None, "no genesis in the database")
        from qilian.node.snapshots import get_state_sync_record

        record = get_state_sync_record(store)
        if record is not None:
            return _verify_from_snapshot(store, genesis, record, progress)
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
            if stored != result.receipts_bytes:
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



class _TreeState:
    """The state at a root, read through the tree (a state-synced store holds no flat values of old heights):
    what execution reads while ``verify-ledger`` re-executes from a snapshot."""

    def __init__(self, tree: StateTree, root: bytes) -> None:
        self.tree, self.root = tree, root

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.tree.get_value(self.root, namespace, key)


class _LayeredNodes:
    """Tree nodes made by re-execution (memory) over the store's: the store is only read."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self.nodes: dict[bytes, bytes] = {}

    def get_node(self, node_hash: bytes) -> bytes | None:
        got = self.nodes.get(node_hash)
        return got if got is not None else self.store.get_node(node_hash)


def _verify_from_snapshot(store: ChainStore, genesis: Genesis, record: Any,
                          progress: Callable[[int, int], None] | None) -> LedgerReport:
    """A state-synced store, trusting nothing in it but genesis: the validator path it kept and the stored header
    H + 1 with its commit must verify from the genesis set (the light-client rules that accepted the snapshot);
    every tree node under header H + 1's root is re-hashed; the window's blocks must hash-chain down from header
    H + 1 and be indexed; every block after H is checked and re-executed from the snapshot's state (read through
    that tree); and the stored flat values must be exactly the tree's at the tip, which is re-hashed too."""
    from qilian.sdk.statesync import ManifestInvalid, TrustedSnapshot, check_window_block, get_path_doc
    from qilian.sdk.verify import ProofInvalid, verify_header_and_commit, verify_validator_path

    suite = get_suite(genesis.suite)
    rules = ChainRules.from_genesis(genesis, suite)
    tip = store.get_tip()
    h = record.height

    def fail(height: int, reason: str, done: int = 0) -> LedgerReport:
        return LedgerReport(False, done, tip.height, height, reason)

    nxt, nxt_commit = store.get_block(h + 1), store.get_commit(h + 1)
    if nxt is None or nxt_commit is None or nxt.last_commit is None:
        return fail(h + 1, f"state-synced at height {h}: block {h + 1}, which proves the snapshot, is not stored "
                           f"yet (let the node sync one more block)")
    try:
        trusted = verify_validator_path(genesis, get_path_doc(record.path))
        verify_header_and_commit(genesis, {"encoded": nxt.header.encode().hex()},
                                 {"encoded": nxt_commit.encode().hex()}, trusted)
    except ProofInvalid as exc:
        return fail(h + 1, f"the snapshot's proving header {h + 1} does not verify from genesis: {exc}")
    sets = {s.compute_hash(suite): s for _, s in record.spans}
    snap = TrustedSnapshot(h, nxt.header.state_root, nxt.header.receipts_root, nxt.header.prev_block_id,
                           nxt.header, nxt_commit, nxt.last_commit, record.window_start, sets, record.path, ())
    seen_txs: set[bytes] = set()
    expected = snap.block_id
    time_ms = 0
    for height in range(h, record.window_start - 1, -1):
        raw = store.get_block_bytes(height)
        if raw is None:
            return fail(height, f"window block {height} is missing")
        try:
            wb = check_window_block(genesis, snap, raw, expected)
        except ManifestInvalid as exc:
            return fail(height, f"window block {height}: {exc}")
        if record.get_set(height) is None or record.get_set(height).compute_hash(suite) != wb.header.validators_hash:
            return fail(height, f"the record's validator set of height {height} is not the one its header names")
        for th in wb.tx_hashes:
            loc = store.get_tx_location(th)
            if loc is None or loc[0] != height:
                return fail(height, f"block {height}: transaction index does not point at this block")
        seen_txs.update(wb.tx_hashes)
        expected = wb.header.prev_block_id
        if height == h:
            time_ms = wb.header.time_ms
    nodes = _LayeredNodes(store)
    tree = StateTree(suite.hash, nodes)
    try:  # every node under the proven root re-hashed: re-execution then reads only proven state
        tree.check_tree(snap.state_root)
    except (StateError, LookupError) as exc:
        return fail(h, f"the snapshot's state under header {h + 1}'s root is damaged or incomplete: {exc}")
    sets_by_height: dict[int, ValidatorSet] = {}

    def get_set(height: int) -> ValidatorSet | None:
        return sets_by_height.get(height) or record.get_set(height)

    def get_parent(height: int, block_id: bytes, t_ms: int, root: bytes, receipts_root: bytes,
                   last: ValidatorSet) -> ParentInfo:
        state = _TreeState(tree, root)
        current, nx = get_validator_sets(rules, state.get_state)
        sets_by_height[height + 1] = current
        return ParentInfo(height, block_id, t_ms, root, receipts_root, current, nx, last,
                          lambda key: get_member(rules, state.get_state, key),
                          get_chain_params(genesis.params, state.get_state, height + 1), get_set,
                          lambda e: state.get_state(EVIDENCE_NAMESPACE, e) is not None)

    last_set = record.get_set(h)
    assert last_set is not None
    try:
        parent = get_parent(h, snap.block_id, time_ms, snap.state_root, snap.receipts_root, last_set)
    except (StateError, LookupError) as exc:
        return fail(h, f"the snapshot's state under header {h + 1}'s root is not stored whole: {exc}")
    checked = 0
    for height in range(h + 1, tip.height + 1):
        def failed(reason: str, at: int = height, done: int = checked) -> LedgerReport:
            return LedgerReport(False, done, tip.height, at, reason)

        raw = store.get_block_bytes(height)
        if raw is None:
            return failed(f"block {height} is missing")
        try:
            block = Block.decode(raw)
        except CodecError as exc:
            return failed(f"block {height} does not decode: {exc}")
        hashes = compute_tx_hashes(suite, block.txs)
        try:
            check_block(rules, parent, block, hashes, seen_txs.__contains__)
            commit = store.get_commit(height)
            if commit is None:
                return failed(f"block {height} has no stored commit")
            block_id = compute_block_id(suite, block.header)
            check_commit(suite, genesis.chain_id, parent.validators, commit, block_id, height)
        except (BlockInvalid, CodecError) as exc:
            return failed(f"block {height}: {exc}")
        for th in hashes:
            loc = store.get_tx_location(th)
            if loc is None or loc[0] != height:
                return failed(f"block {height}: transaction index does not point at this block")
        result = execute_block(rules, _TreeState(tree, parent.state_root), block.txs, hashes, height,
                               block.header.time_ms, block.evidence)
        if store.get_receipts_bytes(height) != result.receipts_bytes:
            return failed(f"block {height}: stored receipts differ from re-execution")
        new_root, new_nodes = tree.apply_writes(parent.state_root, result.writes, height)
        nodes.nodes.update(new_nodes)
        seen_txs.update(hashes)
        parent = get_parent(height, block_id, block.header.time_ms, new_root, result.receipts_root,
                            parent.validators)
        checked += 1
        if progress is not None:
            progress(height, tip.height)
    if (tip.state_root, tip.receipts_root, tip.block_id) != (parent.state_root, parent.receipts_root,
                                                             parent.block_id):
        return LedgerReport(False, checked, tip.height, tip.height,
                            f"stored chain tip does not match re-execution of block {tip.height}")
    read = StateTree(suite.hash, nodes)
    count = 0
    for fk, value in store.iter_state_values():
        ns, key = split_value_key(fk)
        if read.get_value(tip.state_root, ns, key) != value:
            return LedgerReport(False, checked, tip.height, tip.height,
                                f"stored state value {fk[:40]!r} differs from the tree at the tip")
        count += 1
    try:
        keys = read.check_tree(tip.state_root)
    except (StateError, LookupError) as exc:
        return LedgerReport(False, checked, tip.height, tip.height, f"stored state tree is damaged: {exc}")
    if keys != count:
        return LedgerReport(False, checked, tip.height, tip.height,
                            f"stored state tree holds {keys} keys; the flat state {count}")
    return LedgerReport(True, checked, tip.height, None, "")


__all__ = ["LedgerReport", "verify_ledger"]
