"""The node: wiring of store, mempool and execution under the API; consensus (node/consensus.py) drives it.

All the rules live in the pure packages; this module only moves bytes between them, the disk and the API. Blocks
are decided by the BFT consensus — with one validator or many, the same path — and committed here with the
precommit signatures that decided them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from qilian.crypto import get_suite
from qilian.execution.block import (
    ParentInfo,
    compute_empty_root,
    execute_block,
)
from qilian.execution.contracts import compute_genesis_writes
from qilian.execution.env import StateReader
from qilian.execution.evidence import EVIDENCE_NAMESPACE
from qilian.execution.members import get_member
from qilian.execution.modules.regulator import check_admission_not_frozen
from qilian.execution.nodes import ENDPOINT_NAMESPACE, RegisteredNode, get_registered_node, get_registered_nodes
from qilian.execution.params import get_chain_params
from qilian.execution.policy import MEMBER_NAMESPACE
from qilian.execution.rules import (
    ChainRules,
    MemberInfo,
    TxRejected,
    check_tx_static,
    check_tx_window,
    is_valid_tx_signature,
)
from qilian.mempool.pool import Mempool, MempoolFull, PoolEntry
from qilian.node.config import NodeConfig, load_genesis
from qilian.node.limits import check_chain_params
from qilian.node.pruning import PRUNE_BATCH_ENTRIES, check_keep_states, compute_prune_budget
from qilian.node.snapshots import get_state_sync_record
from qilian.node.threads import set_os_thread_name
from qilian.node.valsets import ValidatorSets
from qilian.sdk.keys import get_password_from_env, load_key
from qilian.state import ZERO_HASH, MemoryNodeStore, StateTree
from qilian.storage.store import ChainStore, ChainTip, StoreCorrupt
from qilian.types.codec import CodecError
from qilian.types.core import (
    Block,
    ChainParams,
    Commit,
    Receipt,
    Transaction,
    compute_signed_tx_hash,
    compute_tx_hash_of_raw,
)

log = logging.getLogger("qilian.node")

SIG_CACHE_SIZE = 200_000
"""Verified-signature cache entries (signature key → verified), so a signed transaction is verified once."""
MAX_EVENT_QUEUE = 1000
"""Events buffered per /events subscriber; a subscriber that falls further behind is disconnected."""


VERIFY_THREADS = 2
"""Threads verifying transaction signatures of batches (the machine's 2 cores)."""
ADMISSION_YIELD_MAX_S = 1.0
"""Longest a transaction batch waits for a decided block's execution to finish before it is admitted anyway
(:attr:`Node.execution_idle`): admission yields the interpreter to the commit path, but never starves."""


def compute_gov_positions(block: Block) -> list[int]:
    """Indexes of a block's governance transactions (``gov`` and ``regulator``: the history export's entries),
    for the governance index kept at commit."""
    from qilian.sdk.history import is_governance_tx

    return [i for i, tx in enumerate(block.txs) if is_governance_tx(tx)]


def compute_sig_key(tx_hash: bytes, tx: Transaction) -> bytes:
    """Key of a signature verdict: the body hash (which covers the sender's public key) followed by the signature
    itself. A verdict is about these signed bytes; keyed by body hash alone, a body first seen with a valid
    signature would let any later copy with a garbage signature skip the check."""
    return tx_hash + tx.signature


def _verify_chunk(suite: Any, items: list[tuple[Transaction, bytes]]) -> dict[bytes, bool]:
    """Runs on a verifier thread: no shared state touched."""
    return {compute_sig_key(th, tx): is_valid_tx_signature(suite, tx, th) for tx, th in items}


async def _run_chunk(loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor, suite: Any,
                     items: list[tuple[Transaction, bytes]]) -> dict[bytes, bool]:
    return await loop.run_in_executor(pool, _verify_chunk, suite, items)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Outcome of a batch submission, one entry per transaction in order."""

    results: tuple[tuple[bytes, str, str], ...]
    """(hash or empty, status or error code, message) per transaction. Status: accepted, known, committed;
    anything else is an error code (malformed, bad_signature, mempool_full, a rule's code)."""
    full_at: int | None
    """Index where the mempool filled up, if it did."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """Answer to a transaction submission."""

    tx_hash: bytes
    """The transaction's hash."""
    status: str
    """``accepted`` (in the mempool), ``known`` (already waiting) or ``committed``."""


class Node:
    """One Qilian node over its home directory."""

    def __init__(self, config: NodeConfig, engine: str | None = None):
        """``engine``: the store engine (default: ``[store] engine`` of node.toml, else whatever engine wrote the
        data directory, else LMDB; tests and benches compare the engines on the same path)."""
        self.config = config
        self.genesis = load_genesis(config.genesis_path)
        check_chain_params(self.genesis.params)
        self.suite = get_suite(self.genesis.suite)
        self.rules = ChainRules.from_genesis(self.genesis, self.suite)
        self.genesis_hash = self.genesis.compute_hash(self.suite)
        self.key = load_key(config.key_path, get_password_from_env())
        if self.key.suite.name != self.suite.name:
            raise ValueError(f"node key is a {self.key.suite.name} key but the chain uses {self.suite.name}")
        self.validator = self.genesis.validators.get_by_address(self.key.address)
        check_keep_states(config.store_keep_states)
        self.store = ChainStore(config.data_path, engine=engine or config.store_engine or None,
                                keep_states=config.store_keep_states,
                                node_cache_bytes=config.store_node_cache_mib * 1024 * 1024)
        genesis_writes = compute_genesis_writes(self.genesis)
        genesis_root, genesis_nodes = StateTree(self.suite.hash, MemoryNodeStore()).apply_writes(
            ZERO_HASH, genesis_writes)
        self.store.process_init(
            self.genesis,
            ChainTip(0, b"", self.genesis.genesis_time_ms, genesis_root, compute_empty_root(self.suite)),
            genesis_writes, genesis_nodes,
        )
        if config.store_keep_states:
            since = self.store.process_enable_stale_index()
            log.info("pruning: keeping the last %d states (stale index from version %d)",
                     config.store_keep_states, since)
        self.tree = StateTree(self.suite.hash, self.store)
        self.sync_record = get_state_sync_record(self.store)
        """What this node's store remembers of the snapshot it joined from (None: it holds the chain from
        genesis): the heights it holds and the validator sets of its window."""
        self.state_sync_report: dict[str, Any] | None = None
        """Figures of the state sync this process ran before it started (``/status``), or None."""
        if self.store.get_index_height() < self.store.get_tip().height:
            n = self.store.process_index_backfill(compute_gov_positions)
            log.info("governance index: %d stored blocks indexed (a database from before the index)", n)
        self.valsets = ValidatorSets(self.store, self.suite, self.rules,
                                     self.sync_record.get_set if self.sync_record is not None else None)
        """The validator set of each height, read from chain state (never from genesis)."""
        self._members: tuple[int, dict[bytes, MemberInfo | None]] = (-1, {})
        """(tip height, key → membership read at that tip): admission's membership cache."""
        self.execution_idle = asyncio.Event()
        """Clear while a decided block executes on the execution thread. Admission waits for it (at most
        ADMISSION_YIELD_MAX_S): execution is on consensus's critical path (the next proposal carries its state
        root), and in one process every Python step of admitting a batch — decoding, rule checks, hashing —
        competes with it for the interpreter lock. The same choice as a Tendermint mempool locked during a
        block's commit; the transactions wait, none is refused for it."""
        self.execution_idle.set()
        self._revoked_in_block: list[bytes] = []
        """Keys the block just stored revoked (execution thread → event loop): their waiting txs are evicted."""
        self._params: tuple[tuple[bytes, int], ChainParams] = ((b"", -1), self.genesis.params)
        """((state root, height), limits in force at the height after it): the block limits' cache (keyed by
        height too: an empty block keeps the root while a scheduled change may fall due)."""
        self._nodes_changed = False
        """The block just stored changed membership or endpoints (execution thread → event loop)."""
        self.on_nodes_changed: Callable[[], None] | None = None
        """Set by the P2P wiring: re-read the registered nodes (who is admitted, where to dial) after such a block."""
        self.mempool = Mempool(config.mempool_max_txs, config.mempool_max_bytes)
        self._verify_pool = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="verify",
                                               initializer=set_os_thread_name, initargs=("qilian-verify",))
        self.verifying: dict[bytes, tuple[Transaction, asyncio.Future[dict[bytes, bool]], bytes]] = {}
        """Transactions whose signature check is running, by signature key (:func:`compute_sig_key`)."""
        self._verifying_by_signed: dict[bytes, bytes] = {}
        """Signed hash → signature key of a running check (block assembly looks transactions up by signed hash)."""
        self.sig_ok: OrderedDict[bytes, bool] = OrderedDict()
        """Verified signatures by signature key (:func:`compute_sig_key`), oldest first."""
        self._commit_waiters: dict[bytes, list[asyncio.Future[tuple[int, int]]]] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.on_tx_admitted: Callable[[bytes, bool], None] | None = None
        """Set by the consensus driver: gossip and wake-up on admission."""
        self.blocks_committed = 0
        self.txs_committed = 0
        """Transactions committed since this process started (for TPS in `qilian up`)."""
        self.consensus: Any = None
        """The consensus driver (node/consensus.py), set when the node runs."""
        self.commit_hooks: list[Callable[[Block, Commit, list[bytes], Sequence[Receipt]], None]] = []
        """Observers of each commit (indexer, metrics); they read, never write chain state."""
        self.last_apply_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
        """Execute, state-tree and store seconds of the last committed block (for /metrics)."""
        self._stale_recorded = 0
        """Stale index entries the last committed block recorded (sizes the pruner's work after it)."""
        self.pruned_nodes = 0
        """State-tree nodes (and root pointers) the pruner deleted since this process started (for /metrics)."""
        self.prune_s = 0.0
        """Seconds the pruner took after the last block (for /metrics)."""
        tip = self.store.get_tip()
        last = self.store.get_block_header(tip.height) if tip.height else None
        # True while the last block's receipts and state are not yet committed by a later header.
        self.results_pending = last is not None and last.tx_count > 0

    # -- status ------------------------------------------------------------------------------------------

    def get_tip(self) -> ChainTip:
        return self.store.get_tip()

    def get_parent_info(self, tip: ChainTip) -> ParentInfo:
        """The facts the next block builds on: the validator sets of tip, tip+1 and tip+2 and the membership, all
        from the state of ``tip`` (docs/governance.md: a change decided in block h signs from h+2)."""
        current, nxt = self.valsets.get_sets_at_root(tip.state_root)
        last = self.valsets.get(tip.height) if tip.height else current
        return ParentInfo(tip.height, tip.block_id, tip.time_ms, tip.state_root, tip.receipts_root,
                          current, nxt, last, self.get_member, self.get_chain_params(tip),
                          self.valsets.get, self.is_evidence_committed)

    def get_chain_params(self, tip: ChainTip) -> ChainParams:
        """The block limits in force at tip + 1 (governed; execution/params.py), read from the tip's state."""
        cached_at, params = self._params
        if cached_at != (tip.state_root, tip.height):
            params = get_chain_params(self.genesis.params, lambda ns, key: self.tree.get_value(
                tip.state_root, ns, key), tip.height + 1)
            self._params = ((tip.state_root, tip.height), params)
        return params

    def is_evidence_committed(self, evidence_hash: bytes) -> bool:
        """Whether an evidence item is recorded in the tip's state (committed by an earlier block)."""
        return self.store.get_state(EVIDENCE_NAMESPACE, evidence_hash) is not None

    def get_member(self, public_key: bytes) -> MemberInfo | None:
        """The membership of a key in the state of the committed tip (cached until the tip moves)."""
        return self.get_member_in(self.store, self.store.get_tip().height, public_key)

    def get_member_in(self, view: StateReader, height: int, public_key: bytes) -> MemberInfo | None:
        """The membership of a key in ``view``, the state after block ``height`` (cached until the height moves)."""
        cached_at, cache = self._members
        if cached_at != height:
            cache = {}
            self._members = (height, cache)
        if public_key not in cache:
            if len(cache) > SIG_CACHE_SIZE:
                cache.clear()
            cache[public_key] = get_member(self.rules, view.get_state, public_key)
        return cache[public_key]

    def get_registered_node(self, public_key: bytes) -> RegisteredNode | None:
        """The node chain state registers under this key at the committed tip (P2P admission), or None."""
        return get_registered_node(self.store.get_state, public_key)

    def get_registered_nodes(self) -> tuple[RegisteredNode, ...]:
        """Every node chain state registers at the committed tip, with its endpoint (where P2P dials)."""
        return get_registered_nodes(self.rules, self.store.get_state)

    # -- admission ---------------------------------------------------------------------------------------

    async def process_submit(self, raw: bytes) -> Submitted:
        """Admit one client transaction (see :meth:`process_submit_batch`). Raises CodecError (malformed),
        TxRejected (breaks a rule or a bad signature) or MempoolFull. Nothing changes on error."""
        res = await self.process_submit_batch([raw])
        tx_hash, status, message = res.results[0]
        if status in ("accepted", "known", "committed"):
            return Submitted(tx_hash, status)
        if status == "malformed":
            raise CodecError(message)
        if status == "mempool_full":
            raise MempoolFull(message)
        raise TxRejected(status, message)

    async def process_submit_batch(self, raws: list[bytes], from_client: bool = True) -> BatchResult:
        """Admit transactions: decode, check the rules, verify each signature once (on VERIFY_THREADS threads —
        the crypto libraries release the GIL, so this uses every core), then add them in order. A full mempool
        stops the batch at that transaction; everything before it stays admitted. Of a client's batch only as many
        as the mempool has room for are examined at all; the rest are answered ``mempool_full`` unexamined.
        Transactions from clients are gossiped to the peers; those relayed by peers are not relayed again (the
        network is a full mesh)."""
        if not self.execution_idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.execution_idle.wait(), ADMISSION_YIELD_MAX_S)
        max_tx = self.genesis.params.max_tx_bytes
        results: list[tuple[bytes, str, str]] = [(b"", "", "")] * len(raws)
        todo: list[tuple[int, Transaction, bytes, int]] = []
        decoded: list[tuple[Transaction, bytes] | Exception] = []
        senders: dict[bytes, str] = {}
        room = self.mempool.get_room()
        if from_client and room < len(raws):
            # Refused before any work. Under a sustained overload the mempool is full and clients retry their
            # batches; decoding, checking and verifying each retry only to refuse it took CPU from committing
            # (docs/benchmarks.md, "Refusing cheaply when full"). Peers' transactions are still examined: a
            # waiting proposal may need them (see qilian.shell.mempool).
            for i in range(room, len(raws)):
                results[i] = (b"", "mempool_full", f"not tried: the mempool has room for {room} more transactions")
            raws = raws[:room]
        refused_from: int | None = room if len(results) > len(raws) else None
        for raw in raws:
            try:
                if len(raw) > max_tx:
                    raise TxRejected("too_large", f"transaction is {len(raw)} bytes, over the limit of {max_tx}")
                tx = Transaction.decode(raw, max_bytes=max_tx)
                decoded.append((tx, compute_tx_hash_of_raw(self.suite, raw, tx)))
            except (CodecError, TxRejected) as exc:
                decoded.append(exc)
        # The checks read through one view (on LMDB one read transaction for the batch: ChainStore.begin_reads).
        with self.store.begin_reads() as snap:
            tip_height = snap.get_tip().height
            next_height = tip_height + 1

            def member_of(public_key: bytes) -> MemberInfo | None:
                return self.get_member_in(snap, tip_height, public_key)

            committed = snap.get_committed(d[1] for d in decoded if not isinstance(d, Exception))
            for i, raw in enumerate(raws):
                try:
                    d = decoded[i]
                    if isinstance(d, Exception):
                        raise d
                    tx, th = d
                    if self.mempool.is_known(th):
                        results[i] = (th, "known", "")
                        continue
                    if th in committed:
                        results[i] = (th, "committed", "")
                        continue
                    check_tx_static(self.rules, tx, len(raw), member_of)
                    check_tx_window(self.rules, tx, next_height)
                    sender = senders.get(tx.body.sender)
                    if sender is None:
                        sender = senders[tx.body.sender] = self.suite.compute_address(tx.body.sender).hex()
                    check_admission_not_frozen(snap.get_state, sender, tx.body.to, tx.body.method, next_height)
                except CodecError as exc:
                    results[i] = (b"", "malformed", str(exc))
                    continue
                except TxRejected as exc:
                    results[i] = (b"", exc.code, exc.message)
                    continue
                todo.append((i, tx, th, len(raw)))
        # raws[i] decoded, so it is canonical: its hash is the signed hash.
        signed = [self.suite.hash(raws[i]) for i, _, _, _ in todo]
        verdicts = await self.process_verify_many([(tx, th) for _, tx, th, _ in todo], signed)
        full_at: int | None = None
        # A block may have landed during the verification and committed some of these. Only a block changes what
        # is committed, so when the tip is where the checks above read it, their lookup stands: this second one
        # (a tx-map read per transaction, which grows with the chain: docs/benchmarks.md, "Leaf paths in the
        # parent") is only made after a block.
        landed = self.store.get_tip().height != tip_height
        committed = self.store.get_committed(th for _, _, th, _ in todo) if landed else set()
        for (i, tx, th, size), signed_hash in zip(todo, signed, strict=True):
            if not verdicts.get(compute_sig_key(th, tx), False):
                results[i] = (th, "bad_signature", "signature does not verify for the sender key and this body")
                continue
            if full_at is not None:
                results[i] = (th, "mempool_full", "not tried: the mempool filled up earlier in this batch")
                continue
            if self.mempool.is_known(th) or th in committed:
                results[i] = (th, "known", "")
                continue
            try:
                self.mempool.process_add(PoolEntry(tx, th, signed_hash, size))
            except MempoolFull as exc:
                full_at = i
                results[i] = (th, "mempool_full", str(exc))
                continue
            results[i] = (th, "accepted", "")
            if self.on_tx_admitted is not None:
                self.on_tx_admitted(raws[i], from_client)
        return BatchResult(tuple(results), full_at if full_at is not None else refused_from)

    async def process_verify_many(self, items: list[tuple[Transaction, bytes]],
                                  signed_hashes: Sequence[bytes] | None = None) -> dict[bytes, bool]:
        """Signature verdicts for many transactions, keyed by :func:`compute_sig_key` (never by body hash alone:
        one body may arrive with many signatures, and a verdict on one says nothing about another), computed on
        the verifier threads — each signature once: cached verdicts are reused and a signature already being
        checked for another batch is awaited, not checked again. While a check runs, the transaction is visible
        to block assembly (:meth:`get_verifying_tx`), by its signed hash: ``signed_hashes`` (one per item) when
        the caller hashed the received bytes already, else computed here once per checked transaction."""
        verdicts: dict[bytes, bool] = {}
        waits: list[tuple[bytes, asyncio.Future[dict[bytes, bool]]]] = []
        need: list[tuple[Transaction, bytes]] = []
        need_signed: list[bytes | None] = []
        for k, (tx, th) in enumerate(items):
            sk = compute_sig_key(th, tx)
            if self.sig_ok.get(sk):
                verdicts[sk] = True
            elif sk in self.verifying:
                waits.append((sk, self.verifying[sk][1]))
            elif sk not in verdicts:
                verdicts[sk] = False  # placeholder until checked below
                need.append((tx, th))
                need_signed.append(None if signed_hashes is None else signed_hashes[k])
        if need:
            loop = asyncio.get_running_loop()
            step = max(64, -(-len(need) // VERIFY_THREADS))
            for k in range(0, len(need), step):
                chunk = need[k:k + step]
                fut: asyncio.Future[dict[bytes, bool]] = asyncio.ensure_future(
                    _run_chunk(loop, self._verify_pool, self.suite, chunk))
                for j, (tx, th) in enumerate(chunk, start=k):
                    sk = compute_sig_key(th, tx)
                    signed = need_signed[j]
                    if signed is None:
                        signed = compute_signed_tx_hash(self.suite, tx)
                    self.verifying[sk] = (tx, fut, signed)
                    self._verifying_by_signed[signed] = sk
                    waits.append((sk, fut))
        for sk, fut in waits:
            try:
                res = await asyncio.shield(fut)
            finally:
                entry = self.verifying.get(sk)
                if entry is not None and entry[1] is fut:
                    del self.verifying[sk]
                    self._verifying_by_signed.pop(entry[2], None)
            verdicts[sk] = res[sk]
            if res[sk]:
                self._remember_sig(sk)
        return verdicts

    def get_verifying_tx(self, signed_hash: bytes) -> Transaction | None:
        """The transaction with this signed hash whose signature check is running (for block assembly)."""
        sk = self._verifying_by_signed.get(signed_hash)
        entry = self.verifying.get(sk) if sk is not None else None
        return entry[0] if entry is not None else None

    def is_sig_verified(self, tx: Transaction, tx_hash: bytes) -> bool:
        """Whether this very signature (not just this body) was verified for this body."""
        return bool(self.sig_ok.get(compute_sig_key(tx_hash, tx)))

    def get_sig_checked(self, txs: Sequence[Transaction], tx_hashes: Sequence[bytes]) -> dict[bytes, bool]:
        """For ``check_block``: the body hashes of *these* transactions whose own signature is verified. The map
        is built per block, so check_block's by-hash lookup can never vouch for a different signature."""
        return {th: True for tx, th in zip(txs, tx_hashes, strict=True) if self.is_sig_verified(tx, th)}

    def _remember_sig(self, sig_key: bytes) -> None:
        self.sig_ok[sig_key] = True
        if len(self.sig_ok) > SIG_CACHE_SIZE:
            self.sig_ok.popitem(last=False)

    async def wait_for_commit(self, tx_hash: bytes, timeout_s: float) -> tuple[int, int] | None:
        """(height, index) once the transaction is committed, or None on timeout."""
        loc = self.store.get_tx_location(tx_hash)
        if loc is not None:
            return loc
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._commit_waiters.setdefault(tx_hash, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._commit_waiters.get(tx_hash)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(fut)
                if not waiters:
                    self._commit_waiters.pop(tx_hash, None)

    # -- events ------------------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of block and event notifications; raises RuntimeError when too many subscribers."""
        if len(self._subscribers) >= self.config.max_ws_clients:
            raise RuntimeError(f"too many event subscribers (limit {self.config.max_ws_clients})")
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_EVENT_QUEUE)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(q)

    def _publish(self, msg: dict[str, Any]) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:
                # A slow consumer must not hold the node's memory: drop it; it reconnects and catches up.
                self._subscribers.discard(q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait({"type": "overflow"})

    # -- commit ------------------------------------------------------------------------------------------

    def process_apply_block(self, block: Block, commit: Commit, hashes: list[bytes]) -> list[Receipt]:
        """Execute a decided block and commit it with its results in one synced write; then notify. (Runs on the
        caller's thread; the consensus driver runs :meth:`process_execute_and_store` on its worker thread and
        :meth:`on_block_stored` on the event loop instead.)"""
        receipts = self.process_execute_and_store(block, commit, hashes)
        self.process_prune_after_commit()
        self.on_block_stored(block, commit, hashes, receipts)
        return receipts

    def process_execute_and_store(self, block: Block, commit: Commit, hashes: list[bytes]) -> list[Receipt]:
        """Execute a decided block and commit block, commit, receipts and state in one synced store batch.

        Thread-safe against the event loop: it touches only the store (one writer, any number of readers in
        other threads) and the stateless state tree — never the mempool, the waiters or the subscribers. One
        caller at a time (the driver's single execution thread), blocks in height order.

        Its reads (state values, tree nodes, the tip) go to the live store, and that is exact: this thread is the
        store's only writer and the block's parent is the latest batch, so nothing can change under them until
        this call's own batch. Every other reader sees the store through a snapshot or as a non-consensus query.
        They go through one view for the whole block (:meth:`ChainStore.begin_reads`: on LMDB one read
        transaction instead of one per state value and tree node — tens of thousands per full block), closed
        before the block's write."""
        t0, c0 = time.perf_counter(), time.thread_time()
        with self.store.begin_reads() as snap:
            tip = snap.get_tip()
            if tip.height + 1 != block.header.height:
                raise StoreCorrupt(f"executing block {block.header.height} on top of {tip.height}")
            result = execute_block(self.rules, snap, block.txs, hashes, block.header.height,
                                   block.header.time_ms, block.evidence)
            t1, c1 = time.perf_counter(), time.thread_time()
            state = StateTree(self.suite.hash, snap).compute_commit(tip.state_root, result.writes,
                                                                    block.header.height)
            nodes = state.nodes
            t2, c2 = time.perf_counter(), time.thread_time()
        new_tip = ChainTip(block.header.height, commit.block_id, block.header.time_ms, state.root,
                           result.receipts_root)
        self.store.process_commit_block(block, commit, hashes, result.receipts, result.writes, nodes, new_tip,
                                        compute_gov_positions(block), state.stale, state.replaced_root,
                                        self.valsets.get_sets_at_root(tip.state_root)[0], result.receipts_bytes)
        self._stale_recorded = len(state.stale) + (state.replaced_root is not None)
        self._revoked_in_block = [k for (ns, k), v in result.writes.items() if ns == MEMBER_NAMESPACE and v is None]
        self._nodes_changed = any(ns in (MEMBER_NAMESPACE, ENDPOINT_NAMESPACE) for ns, _ in result.writes)
        t3, c3 = time.perf_counter(), time.thread_time()
        self.last_apply_s = (t1 - t0, t2 - t1, t3 - t2)
        # Wall time, then this thread's CPU time: on a shared machine the gap is time spent waiting for a core or
        # for the GIL, which grows with the other threads' load and says nothing about the phase itself.
        log.debug("block %d: %d txs, execute %.1f ms, state %.1f ms (%d nodes), store %.1f ms; "
                  "cpu execute %.1f ms, state %.1f ms, store %.1f ms",
                  block.header.height, len(hashes), (t1 - t0) * 1e3, (t2 - t1) * 1e3, len(nodes), (t3 - t2) * 1e3,
                  (c1 - c0) * 1e3, (c2 - c1) * 1e3, (c3 - c2) * 1e3)
        return list(result.receipts)

    def process_prune_after_commit(self) -> int:
        """Delete the state a committed block made prunable (the tree nodes no retained version holds), at most
        :func:`~qilian.node.pruning.compute_prune_budget` entries in batches of ``PRUNE_BATCH_ENTRIES``; returns
        the entries consumed. A no-op on an archive node.

        Runs on the store's one writer thread right after a commit — the consensus driver queues it behind the
        block on the execution thread, so it overlaps the next height's consensus and never runs inside a
        decision. Each batch is atomic and leaves every retained version whole, so a kill at any moment is
        harmless; a failure is logged and left for the next block (the stale index still names the work), never
        raised into the chain."""
        if not self.store.keep_states:
            return 0
        t0 = time.perf_counter()
        budget = compute_prune_budget(self._stale_recorded)
        done = 0
        try:
            while done < budget:
                step = self.store.process_prune(min(PRUNE_BATCH_ENTRIES, budget - done))
                done += step.entries
                self.pruned_nodes += step.nodes + step.pointers
                if not step.more:
                    break
        except Exception:  # the pruner must never stop the chain: the stale index keeps the work for later
            log.exception("pruning after block %d failed; retrying after the next block", self.get_tip().height)
        self.prune_s = time.perf_counter() - t0
        return done

    def get_oldest_state_height(self) -> int:
        """The oldest height whose state (the one its header commits) this node still proves: 1 on an archive."""
        return self.store.get_oldest_state_version() + 1

    def on_block_stored(self, block: Block, commit: Commit, hashes: list[bytes], receipts: list[Receipt]) -> None:
        """On the event loop, after a block is durable: drop its transactions from the mempool and notify."""
        self.mempool.process_remove(hashes)
        revoked, self._revoked_in_block = self._revoked_in_block, []
        if revoked:
            evicted = self.mempool.process_remove_senders(revoked)
            if evicted:
                log.info("block %d revoked %d key(s); evicted %d of their waiting transactions",
                         block.header.height, len(revoked), evicted)
        if self._nodes_changed:
            self._nodes_changed = False
            if self.on_nodes_changed is not None:
                self.on_nodes_changed()
        self.results_pending = bool(hashes)
        self.blocks_committed += 1
        self.txs_committed += len(hashes)
        self._on_committed(block, commit, hashes, receipts)

    def _on_committed(self, block: Block, commit: Commit, hashes: list[bytes], receipts: tuple[Receipt, ...]
                      | list[Receipt]) -> None:
        h = block.header.height
        for item in block.evidence:
            log.warning("block %d commits equivocation evidence against validator %s (height %d, round %d); "
                        "governance may remove it (docs/governance.md)", h, item.vote_a.validator.hex(),
                        item.vote_a.height, item.vote_a.round)
        for i, th in enumerate(hashes):
            for fut in self._commit_waiters.pop(th, []):
                if not fut.done():
                    fut.set_result((h, i))
        for hook in self.commit_hooks:
            try:
                hook(block, commit, hashes, receipts)
            except Exception:  # an observer's bug must never stop the chain
                log.exception("commit hook %r failed at height %d", hook, h)
        if not self._subscribers:
            return
        from qilian.api.views import event_view, evidence_view

        self._publish({"type": "block", "height": h, "block_id": commit.block_id.hex(),
                       "tx_count": len(hashes), "time_ms": block.header.time_ms})
        for item in block.evidence:  # for governance tooling: a validator equivocated (no slashing here)
            self._publish({"type": "evidence", "committed_at": h, **evidence_view(self.suite, item)})
        for th, r in zip(hashes, receipts, strict=True):
            for ev in r.events:
                self._publish({"type": "event", "height": h, "tx_hash": th.hex(), **event_view(ev)})

    def close(self) -> None:
        self._verify_pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()
