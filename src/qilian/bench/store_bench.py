"""``qilian bench store``: the synced commit of a 5,000-transaction evidence block as the store grows, for the old
layout and the new one on both engines, in one run.

Why store-level: the soak's slowdown (docs/benchmarks.md, "Soak") is the block commit growing with the store. This
drives :meth:`ChainStore.process_commit_block` directly — one core, no network — with what the node writes for the
``evidence`` workload: one real block of signed ``evidence.register`` transactions is executed once (its encoded
block and receipts are reused), and every synthetic block gets fresh random transaction hashes and fresh random
digests, i.e. 5,000 new hash-keyed state values and tx-index entries, plus the state-tree nodes the real
:class:`StateTree` computes over the store (its reads go through the store under test). Every layout gets the same
random sequence. Only ``process_commit_block`` is timed — and, with ``keep_states`` (issue 18, "Storage only
grows"), the pruning the node runs after each commit, timed on its own: the same budget and batches as
:meth:`qilian.node.node.Node.process_prune_after_commit`, so the disk bytes per transaction are what a pruning
node's store takes. The node refuses fewer than ``MIN_KEEP_STATES`` (1,001) states; the bench does not, so a
short run can show the steady state of a small window too.
"""

from __future__ import annotations

import random
import resource
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import lmdb

from qilian.execution.env import StateReader
from qilian.execution.rules import ChainRules
from qilian.storage.store import ChainStore, ChainTip, compute_value_key
from qilian.types.codec import encode_trusted
from qilian.types.core import Block, Commit, Receipt, Transaction

LAYOUTS: Final = ("v1-lmdb", "v2-lmdb", "v2-rocksdb")
"""v1-lmdb: the store before issue 18 (hash-keyed LMDB tables); v2-*: :class:`ChainStore` on each engine."""
EVIDENCE_NS: Final = "c:evidence"


@dataclass(frozen=True, slots=True)
class Template:
    """One real executed evidence block, reused by every synthetic block."""

    block: Block
    commit: Commit
    receipts: tuple[Receipt, ...]
    record_prefix: bytes
    """State key of ``records[digest]`` without the 32-byte digest."""
    record_value: bytes
    genesis_writes: Mapping[tuple[str, bytes], bytes | None]


@dataclass(frozen=True, slots=True)
class StoreRow:
    layout: str
    """The layout, with `` keep=N`` when the store prunes to N states."""
    txs: int
    commit_ms: float
    """Mean commit over the window that ended at ``txs``."""
    disk_bytes: int
    rss_mb: float
    prune_ms: float = 0.0
    """Mean pruning time per block over the same window (0 on an archive store)."""
    pruned: int = 0
    """Stale entries pruned so far (each a node or a root pointer, with its index entry)."""
    tree_ms: float = 0.0
    """Mean state-tree update per block over the same window (``StateTree.compute_commit`` reading the store's
    nodes: its engine reads and node cache, as on a validator)."""


@dataclass(frozen=True, slots=True)
class EvidenceSetup:
    """A one-validator chain's rules and genesis state, and one block's worth of signed evidence calls."""

    rules: ChainRules
    state: StateReader
    """The genesis state (in memory)."""
    txs: tuple[Transaction, ...]
    tx_hashes: tuple[bytes, ...]
    genesis_writes: Mapping[tuple[str, bytes], bytes | None]
    validator: bytes
    """The validator's address."""


def compute_evidence_setup(block_txs: int, tag: str = "store") -> EvidenceSetup:
    """Sign ``block_txs`` distinct ``evidence.register`` calls (digests differ per ``tag``) for a fresh chain."""
    from qilian.bench.network import Workload, build_call
    from qilian.crypto import get_suite
    from qilian.execution.contracts import compute_genesis_writes
    from qilian.sdk.client import build_tx
    from qilian.sdk.keys import KeyPair
    from qilian.types.core import (
        ChainParams,
        Genesis,
        Member,
        Organisation,
        Validator,
        ValidatorSet,
        compute_tx_hash,
    )

    suite = get_suite("ed25519")

    def key(seed: int) -> KeyPair:
        sk = suite.private_key_from_seed(seed.to_bytes(2, "big") * 16)
        return KeyPair(suite, sk, suite.get_public_key(sk))

    client, val = key(100), key(9)
    genesis = Genesis("bench-store", "ed25519", 0,
                      (Organisation("org", (Member("client", client.public_key, ("member",)),)),),
                      ValidatorSet((Validator(val.address, val.public_key, 1),)), ChainParams())
    rules = ChainRules.from_genesis(genesis, suite)
    gw = compute_genesis_writes(genesis)
    values = {k: v for k, v in gw.items() if v is not None}

    class _State:
        def get_state(self, namespace: str, k: bytes) -> bytes | None:
            return values.get((namespace, k))

    workload = Workload("evidence", tag)
    txs = tuple(build_tx(client, genesis.chain_id, *build_call(workload, i)[1:], 1_000) for i in range(block_txs))
    hashes = tuple(compute_tx_hash(suite, tx.body) for tx in txs)
    return EvidenceSetup(rules, _State(), txs, hashes, gw, val.address)


def run_execute_bench(block_txs: int = 5_000, rounds: int = 4,
                      progress: Callable[[str], None] = lambda _: None) -> list[float]:
    """``qilian bench execute``: microseconds per transaction of ``execute_block`` over one block of
    ``block_txs`` fresh evidence calls on the genesis state, in this process, once per round (new digests each
    round). The cost of the execution layer alone: contract runtime, sandbox boundary, modules, receipts root."""
    from qilian.execution.block import execute_block

    out: list[float] = []
    for r in range(rounds):
        setup = compute_evidence_setup(block_txs, f"execute-{r}")
        progress(f"round {r + 1}/{rounds}: executing {block_txs:,} transactions")
        t0 = time.perf_counter()
        execute_block(setup.rules, setup.state, setup.txs, setup.tx_hashes, 1, 1_000)
        out.append((time.perf_counter() - t0) * 1e6 / block_txs)
    return out


def compute_template(block_txs: int) -> Template:
    """Sign and execute one evidence block of ``block_txs`` transactions."""
    from qilian.execution.block import execute_block
    from qilian.types.core import BlockHeader, CommitSig

    setup = compute_evidence_setup(block_txs)
    txs, res = setup.txs, execute_block(setup.rules, setup.state, setup.txs, setup.tx_hashes, 1, 1_000)
    records = [(k, v) for (ns, k), v in res.writes.items() if ns == EVIDENCE_NS and v is not None and len(k) > 32]
    rkey, rvalue = records[0]
    val = setup.validator
    header = BlockHeader(1, setup.rules.chain_id, 1, 1_000, b"", b"", b"\0" * 32, block_txs, b"\0" * 32,
                         b"\0" * 32, b"\0" * 32, b"\0" * 32, val, b"\0" * 32)
    block = Block(header, txs, None)
    commit = Commit(1, 0, b"\1" * 32, tuple(CommitSig(val, b"\2" * 64) for _ in range(4)))
    assert rvalue is not None
    return Template(block, commit, res.receipts, rkey[:-32], rvalue, setup.genesis_writes)


class LegacyStore:
    """The store before issue 18 (store v1), kept here only to measure against: hash-keyed LMDB tables (tx hash →
    location, flat state key → value) beside height-keyed blocks and ``version ‖ hash`` nodes."""

    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env = lmdb.open(str(path), map_size=64 * 1024**3, max_dbs=16, sync=True, metasync=True)
        self._dbs = {n: self.env.open_db(n.encode()) for n in
                     ("meta", "blocks", "commits", "receipts", "txindex", "state_nodes", "state_values")}

    def process_commit_block(self, block: Block, commit: Commit, tx_hashes: Sequence[bytes],
                             receipts: Sequence[Receipt], state_writes: Mapping[tuple[str, bytes], bytes | None],
                             new_nodes: Mapping[bytes, bytes], tip: ChainTip) -> None:
        d = self._dbs
        hk = struct.pack(">Q", block.header.height)
        with self.env.begin(write=True) as txn:
            txn.put(hk, block.encode(), db=d["blocks"])
            txn.put(hk, commit.encode(), db=d["commits"])
            txn.put(hk, encode_trusted([r.to_wire() for r in receipts]), db=d["receipts"])
            for i, th in enumerate(tx_hashes):
                txn.put(th, hk + struct.pack(">I", i), db=d["txindex"])
            txn.cursor(db=d["state_nodes"]).putmulti(sorted(new_nodes.items()), overwrite=False)
            for (ns, key), value in sorted(state_writes.items()):
                vk = compute_value_key(ns, key)
                if value is None:
                    txn.delete(vk, db=d["state_values"])
                else:
                    txn.put(vk, value, db=d["state_values"])
            txn.put(b"tip", encode_trusted(tip.to_wire()), db=d["meta"])

    def get_node(self, node_hash: bytes) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(node_hash, db=self._dbs["state_nodes"])

    def get_disk_bytes(self) -> int:
        from qilian.storage.engine import get_disk_bytes

        return get_disk_bytes(self.path)

    def close(self) -> None:
        self.env.close()


def get_rss_mb() -> float:
    """Resident set size of this process now (Linux /proc), in MiB."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")


def run_layout(layout: str, template: Template, path: Path, total_txs: int, report_every: int, seed: int,
               progress: Callable[[str], None] | None = None, keep_states: int = 0,
               compact: bool = False) -> list[StoreRow]:
    """Commit ``total_txs`` transactions in blocks like the template's into a fresh store of one layout (v2
    layouts: pruned to ``keep_states`` states after each block, 0 = archive); with ``compact``, a last row
    ``<layout> compacted`` gives the disk bytes after :meth:`ChainStore.process_compact`."""
    from qilian.crypto import get_suite
    from qilian.node.pruning import PRUNE_BATCH_ENTRIES, compute_prune_budget
    from qilian.state import EMPTY_ROOT, MemoryNodeStore, StateTree

    if keep_states and layout == "v1-lmdb":
        raise ValueError("the v1 layout has no pruning; --keep-states applies to v2-lmdb and v2-rocksdb")
    hash_fn = get_suite("ed25519").hash
    block_txs = len(template.block.txs)
    store: Any = LegacyStore(path) if layout == "v1-lmdb" else ChainStore(path, engine=layout.split("-", 1)[1],
                                                                          keep_states=keep_states)
    label = f"{layout} keep={keep_states}" if keep_states else layout
    rng = random.Random(seed)
    root, gnodes = StateTree(hash_fn, MemoryNodeStore()).apply_writes(EMPTY_ROOT, template.genesis_writes)
    tip = ChainTip(0, b"", 0, root, b"\0" * 32)
    if isinstance(store, ChainStore):
        from qilian.types.core import ChainParams, Genesis, ValidatorSet

        store.process_init(Genesis("bench-store", "ed25519", 0, (), ValidatorSet(()), ChainParams()), tip,
                           template.genesis_writes, gnodes)
        if keep_states:
            store.process_enable_stale_index()
    else:
        store.process_commit_block(template.block, template.commit, [], [], template.genesis_writes, gnodes, tip)
    tree = StateTree(hash_fn, store)
    rows: list[StoreRow] = []
    window: list[float] = []
    prune_window: list[float] = []
    tree_window: list[float] = []
    pruned = 0
    count_key = (EVIDENCE_NS, b"\x91\xa5count")
    try:
        height = 0
        for done in range(block_txs, total_txs + 1, block_txs):
            height += 1
            hashes = [rng.randbytes(32) for _ in range(block_txs)]
            writes: dict[tuple[str, bytes], bytes | None] = {
                (EVIDENCE_NS, template.record_prefix + rng.randbytes(32)): template.record_value
                for _ in range(block_txs)}
            writes[count_key] = str(done).encode()
            t_tree = time.perf_counter()
            state = tree.compute_commit(root, writes, height)
            tree_window.append(time.perf_counter() - t_tree)
            root, nodes = state.root, state.nodes
            block = Block(replace(template.block.header, height=height), template.block.txs, None)
            tip = ChainTip(height, b"\1" * 32, height * 1000, root, b"\0" * 32)
            t0 = time.perf_counter()
            if isinstance(store, ChainStore):
                store.process_commit_block(block, template.commit, hashes, template.receipts, writes, nodes, tip,
                                           (), state.stale, state.replaced_root)
            else:
                store.process_commit_block(block, template.commit, hashes, template.receipts, writes, nodes, tip)
            t1 = time.perf_counter()
            window.append(t1 - t0)
            if keep_states:  # what Node.process_prune_after_commit does after each block
                budget, consumed = compute_prune_budget(len(state.stale) + 1), 0
                while consumed < budget:
                    step = store.process_prune(min(PRUNE_BATCH_ENTRIES, budget - consumed))
                    consumed += step.entries
                    if not step.more:
                        break
                pruned += consumed
                prune_window.append(time.perf_counter() - t1)
            if done % report_every == 0 or done == total_txs:
                row = StoreRow(label, done, 1e3 * sum(window) / len(window), store.get_disk_bytes(), get_rss_mb(),
                               1e3 * sum(prune_window) / len(window), pruned, 1e3 * sum(tree_window) / len(window))
                rows.append(row)
                window, prune_window, tree_window = [], [], []
                if progress:
                    progress(f"{label}: {done:,} txs, tree {row.tree_ms:.0f} ms/block, "
                             f"commit {row.commit_ms:.0f} ms/block, "
                             + (f"prune {row.prune_ms:.0f} ms/block ({pruned:,} entries), " if keep_states else "")
                             + f"{row.disk_bytes / done:.0f} disk bytes/tx, RSS {row.rss_mb:.0f} MiB")
        if compact and isinstance(store, ChainStore):
            t0 = time.perf_counter()
            store.process_compact()
            row = StoreRow(f"{label} compacted", rows[-1].txs, 0.0, store.get_disk_bytes(), get_rss_mb())
            rows.append(row)
            if progress:
                progress(f"{label}: compacted in {time.perf_counter() - t0:.1f} s: "
                         f"{row.disk_bytes / row.txs:.0f} disk bytes/tx")
    finally:
        store.close()
    return rows


def run_store_bench(total_txs: int = 1_000_000, block_txs: int = 5_000, report_every: int = 100_000,
                    layouts: Sequence[str] = LAYOUTS, workdir: Path | None = None, seed: int = 18,
                    progress: Callable[[str], None] | None = None,
                    keep_states: Sequence[int] = (0,), compact: bool = False) -> list[StoreRow]:
    """Every layout, at every ``keep_states`` (0: archive), over the same workload; each in a fresh directory
    that is removed afterwards."""
    for layout in layouts:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if any(k < 0 for k in keep_states) or not keep_states:
        raise ValueError("keep_states are integers ≥ 0 (0: archive)")
    if progress:
        progress(f"signing and executing one template block of {block_txs:,} evidence transactions")
    template = compute_template(block_txs)
    rows: list[StoreRow] = []
    base = Path(tempfile.mkdtemp(prefix="qilian-store-bench-", dir=workdir))
    try:
        for layout in layouts:
            for keep in keep_states:
                if keep and layout == "v1-lmdb":
                    continue
                path = base / f"{layout}-{keep}"
                rows += run_layout(layout, template, path, total_txs, report_every, seed, progress, keep, compact)
                shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def compute_table(rows: Sequence[StoreRow]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows for printing: per size, commit ms and disk bytes/tx per layout, and ratios to v1."""
    layouts = list(dict.fromkeys(r.layout for r in rows))
    by = {(r.layout, r.txs): r for r in rows}
    sizes = sorted({r.txs for r in rows})
    cols = ["txs in store"] + [f"{lay} ms/block" for lay in layouts]
    if "v1-lmdb" in layouts:
        cols += [f"v1 ÷ {lay}" for lay in layouts if lay != "v1-lmdb"]
    pruning = [lay for lay in layouts if " keep=" in lay and not lay.endswith(" compacted")]
    cols += [f"{lay} prune ms/block" for lay in pruning]
    trees = [lay for lay in layouts if lay != "v1-lmdb" and not lay.endswith(" compacted")]
    cols += [f"{lay} tree ms/block" for lay in trees]
    cols += [f"{lay} B/tx" for lay in layouts] + [f"{lay} RSS MiB" for lay in layouts]
    out = []
    for n in sizes:
        line = [f"{n:,}"] + [f"{by[(lay, n)].commit_ms:.0f}" if (lay, n) in by else "" for lay in layouts]
        if "v1-lmdb" in layouts:
            for lay in layouts:
                if lay != "v1-lmdb":
                    a, b = by.get(("v1-lmdb", n)), by.get((lay, n))
                    line.append(f"{a.commit_ms / b.commit_ms:.1f}×" if a and b else "")
        line += [f"{by[(lay, n)].prune_ms:.0f}" if (lay, n) in by else "" for lay in pruning]
        line += [f"{by[(lay, n)].tree_ms:.0f}" if (lay, n) in by else "" for lay in trees]
        line += [f"{by[(lay, n)].disk_bytes / n:.0f}" if (lay, n) in by else "" for lay in layouts]
        line += [f"{by[(lay, n)].rss_mb:.0f}" if (lay, n) in by else "" for lay in layouts]
        out.append(line)
    return cols, out
