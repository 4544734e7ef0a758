"""The simulator's side of the shell's ports: an in-memory disk that can die between any two durable operations,
a seeded clock, and the ledger and transaction pool over it.

Every durable operation — a WAL write, a WAL fsync, a WAL truncation, a signer-state save, a block store — is
numbered on the node's :class:`Disk`. A crash plan names an operation number: when the shell reaches it, the port
raises :class:`SimCrash` *before* the operation takes effect, the exception unwinds the shell exactly where the
process would die, and the world throws the node's memory away. What survives is what the operation model says:

- a process crash (SIGKILL) keeps every WAL byte handed to the OS; if it hits a WAL write, a seeded prefix of that
  write is kept (a torn record);
- a power loss keeps only the synced WAL prefix plus a seeded prefix of what followed (the torn last write);
- the signer state is replaced atomically (old or new, never half); a block is stored in one atomic write (one batch).

The WAL bytes are read back by the node's own reader (:func:`qilian.shell.wal.decode_frames`), so the simulator
exercises the torn-tail cut the node runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from qilian.consensus.signer import SignerState
from qilian.consensus.validators import ValidatorSet as ConsensusValidators
from qilian.execution.block import ParentInfo, execute_block
from qilian.execution.chain import MemberInfo, TxRejected
from qilian.execution.evidence import EVIDENCE_NAMESPACE
from qilian.execution.members import get_member
from qilian.execution.params import get_chain_params
from qilian.execution.rules import ChainRules, check_tx_static, check_tx_window, is_valid_tx_signature
from qilian.execution.valsets import ValidatorSetBook
from qilian.mempool.pool import Mempool, MempoolFull, PoolEntry
from qilian.shell.wal import WalHeight, WalRecord, decode_frames, encode_frame
from qilian.state import MemoryNodeStore, StateTree
from qilian.types.codec import CodecError
from qilian.types.core import Block, Commit, Receipt, Transaction, ValidatorSet, compute_tx_hash


class SimCrash(BaseException):
    """The node dies here. A BaseException so no ``except Exception`` in the shell can swallow it."""


@dataclass(slots=True)
class Ledger:
    """The durable chain of one node (what the chain store holds)."""

    tip: ParentInfo
    """The last committed block's facts (genesis facts at height 0) with the validator sets read from its state
    (``validators`` signs tip + 1, ``next_validators`` tip + 2, ``last_validators`` signed the tip); its
    ``get_member`` is left None here (a closure over one incarnation's memory) and set by the ledger port."""
    blocks: dict[int, bytes] = field(default_factory=dict)
    """Height → canonical block bytes."""
    commits: dict[int, Commit] = field(default_factory=dict)
    """Height → the commit stored with the block."""
    tx_index: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    """Transaction hash → (height, index)."""
    values: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    """Latest state values."""


@dataclass(slots=True)
class Disk:
    """What one node keeps across a crash, and the crash plan that decides when it dies."""

    ledger: Ledger
    """The committed chain."""
    wal: bytearray = field(default_factory=bytearray)
    """WAL bytes handed to the OS."""
    wal_synced: int = 0
    """Length of the WAL prefix that is durable."""
    signer: SignerState = field(default_factory=SignerState)
    """The signer guard's persisted state."""
    ops: int = 0
    """Durable operations so far (all incarnations)."""
    crash_at: int | None = None
    """Die at this operation number (before it takes effect)."""
    power_loss: bool = False
    """The planned crash also loses the page cache (unsynced WAL bytes beyond a torn prefix)."""
    tear: int = 0
    """Seeded per-mille of an interrupted write (or of the unsynced tail) that survives."""
    crashed_on: str = ""
    """The operation the last crash interrupted."""
    crash_points: int = 0
    """Crashes taken at a durable operation."""

    def tick(self, op: str, torn_write: bytes = b"") -> None:
        """Count a durable operation; raise SimCrash when the plan says so (the operation does not happen)."""
        self.ops += 1
        if self.crash_at is not None and self.ops >= self.crash_at:
            self.crash_at = None
            self.crashed_on = op
            self.crash_points += 1
            if torn_write:
                self.wal += torn_write[:len(torn_write) * self.tear // 1000]
            if self.power_loss:
                tail = len(self.wal) - self.wal_synced
                del self.wal[self.wal_synced + tail * self.tear // 1000:]
            raise SimCrash(op)

    def lose_page_cache(self) -> None:
        """A crash outside a durable operation with power loss: unsynced WAL bytes beyond a torn prefix go."""
        tail = len(self.wal) - self.wal_synced
        del self.wal[self.wal_synced + tail * self.tear // 1000:]


class MemWal:
    """WalFile port over ``Disk.wal``."""

    def __init__(self, disk: Disk):
        self.disk = disk
        self.records, good = decode_frames(bytes(disk.wal))
        if good < len(disk.wal):  # cut the torn tail, as the node does on open
            del disk.wal[good:]
            disk.wal_synced = min(disk.wal_synced, good)
        self._dirty = len(disk.wal) > disk.wal_synced

    @property
    def is_dirty(self) -> bool:
        return self._dirty

    def append(self, record: WalRecord) -> None:
        frame = encode_frame(record)
        self.disk.tick("wal-write", frame)
        self.disk.wal += frame
        self._dirty = True

    def sync(self) -> None:
        if self._dirty:
            self.disk.tick("wal-sync")
            self.disk.wal_synced = len(self.disk.wal)
            self._dirty = False

    def reset(self, height: int) -> None:
        self.disk.tick("wal-truncate")
        self.disk.wal.clear()
        self.disk.wal_synced = 0
        self.records = []
        self._dirty = False
        self.append(WalHeight(height))
        self.sync()


class MemSignerStore:
    """SignerStore port over ``Disk.signer`` (an atomic replace)."""

    def __init__(self, disk: Disk):
        self.disk = disk

    def load(self) -> SignerState:
        return self.disk.signer

    def save(self, state: SignerState) -> None:
        self.disk.tick("signer-save")
        self.disk.signer = state


Later = Callable[[int, Callable[[], None]], None]
"""Schedule a callback on this node's incarnation after some ticks (the world drops it if the node died)."""


class MemLedger:
    """Ledger port over ``Disk.ledger``: real execution (:func:`execute_block`) and state tree, one atomic store.
    The validator set of a height is read from this real state by the node's own lookup
    (:class:`~qilian.execution.valsets.ValidatorSetBook`), so a governance change in a simulated block takes effect
    at H+2 exactly as on a node.

    Tree nodes are content-addressed and never deleted, so every node of a world shares one node store: sharing
    changes no root and no durability (a node only ever reaches nodes under roots it stored)."""

    def __init__(self, disk: Disk, rules: ChainRules, nodes: MemoryNodeStore, later: Later, delay: Callable[[], int],
                 on_stored: Callable[[Block, Commit, list[bytes]], None]):
        self.disk = disk
        self.rules = rules
        self._tree = StateTree(rules.suite.hash, nodes)
        self._nodes = nodes
        self._later = later
        self._delay = delay
        self._on_stored = on_stored
        self.valsets = ValidatorSetBook(rules.suite, rules, self._get_tip, self._get_header_root,
                                        self._tree.get_value)
        """The validator set of each height, from this node's state (never genesis's by default)."""

    def _get_tip(self) -> tuple[int, bytes]:
        tip = self.disk.ledger.tip
        return tip.height, tip.state_root

    def _get_header_root(self, height: int) -> bytes | None:
        raw = self.disk.ledger.blocks.get(height)
        return None if raw is None else Block.decode(raw).header.state_root

    def get_parent_info(self) -> ParentInfo:
        return replace(self.disk.ledger.tip, get_member=self.get_member, get_validators_at=self.valsets.get,
                       is_evidence_committed=self.is_evidence_committed)

    def is_evidence_committed(self, evidence_hash: bytes) -> bool:
        """Whether an evidence item is recorded in the tip's state."""
        return self.get_state(EVIDENCE_NAMESPACE, evidence_hash) is not None

    def get_member(self, public_key: bytes) -> MemberInfo | None:
        """Membership of a key in the tip's state."""
        return get_member(self.rules, self.get_state, public_key)

    def get_validators(self, height: int) -> ValidatorSet | None:
        return self.valsets.get(height)

    def get_consensus_validators(self, height: int) -> ConsensusValidators | None:
        return self.valsets.get_consensus(height)

    def get_public_key(self, height: int, address: bytes) -> bytes | None:
        return self.valsets.get_public_key(height, address)

    def get_block_bytes(self, height: int) -> bytes | None:
        return self.disk.ledger.blocks.get(height)

    def get_commit(self, height: int) -> Commit | None:
        return self.disk.ledger.commits.get(height)

    def get_committed(self, tx_hashes: Iterable[bytes]) -> set[bytes]:
        index = self.disk.ledger.tx_index
        return {h for h in tx_hashes if h in index}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.disk.ledger.values.get((namespace, key))

    def execute_and_store(self, block: Block, commit: Commit, hashes: list[bytes],
                          done: Callable[[list[Receipt] | None, BaseException | None], None]) -> None:
        def run() -> None:
            ledger = self.disk.ledger
            tip = ledger.tip
            h = block.header
            result = execute_block(self.rules, self, block.txs, hashes, h.height, h.time_ms, block.evidence)
            root, new_nodes = self._tree.apply_writes(tip.state_root, result.writes, h.height)
            self.disk.tick("store")
            self._nodes.put_nodes(new_nodes)
            ledger.blocks[h.height] = block.encode()
            ledger.commits[h.height] = commit
            for i, th in enumerate(hashes):
                ledger.tx_index[th] = (h.height, i)
            for k, v in result.writes.items():
                if v is None:
                    ledger.values.pop(k, None)
                else:
                    ledger.values[k] = v
            current, nxt = self.valsets.get_sets_at_root(root)
            ledger.tip = ParentInfo(h.height, commit.block_id, h.time_ms, root, result.receipts_root, current, nxt,
                                    tip.validators, params=get_chain_params(
                                        self.rules.genesis.params, self.get_state, h.height + 1))
            self._on_stored(block, commit, hashes)
            done(list(result.receipts), None)

        self._later(self._delay(), run)

    def on_block_stored(self, block: Block, commit: Commit, hashes: list[bytes], receipts: list[Receipt]) -> None:
        self.pool.on_block_stored(hashes)

    pool: SimTxPool
    """Set by the world: the node's transaction pool (its mempool drops committed transactions)."""


class EarlyValsetLedger(MemLedger):
    """Negative control (``SimConfig.early_valsets``): a ledger port whose set lookup applies a validator-set
    change one height early — the set of tip + 1 is read as the tip state's ``next`` (the H+1 bug). Block building
    and checking keep the right sets; only what the consensus reactor asks is wrong, as a shell that mis-reads the
    rule would be. The oracle's certificate and peer checks must catch it."""

    def _get_early(self, height: int) -> int:
        return height + 1 if height == self.disk.ledger.tip.height + 1 else height

    def get_validators(self, height: int) -> ValidatorSet | None:
        return self.valsets.get(self._get_early(height))

    def get_consensus_validators(self, height: int) -> ConsensusValidators | None:
        return self.valsets.get_consensus(self._get_early(height))

    def get_public_key(self, height: int, address: bytes) -> bytes | None:
        return self.valsets.get_public_key(self._get_early(height), address)


class SimTxPool:
    """TxPool port: admission with the node's pure rules (chain, size, membership, window, signature once)."""

    def __init__(self, rules: ChainRules, ledger: MemLedger, later: Later,
                 on_admitted: Callable[[bytes, bool], None]):
        self.rules = rules
        self.ledger = ledger
        self.mempool = Mempool(10_000, 64 << 20)
        self.results_pending = False
        self._later = later
        self._on_admitted = on_admitted
        self._sig_ok: set[bytes] = set()

    def on_block_stored(self, hashes: list[bytes]) -> None:
        self.mempool.process_remove(hashes)
        self.results_pending = bool(hashes)

    def _is_sig_ok(self, tx: Transaction, th: bytes) -> bool:
        key = th + tx.signature
        if key in self._sig_ok:
            return True
        if is_valid_tx_signature(self.rules.suite, tx, th):
            self._sig_ok.add(key)
            return True
        return False

    def submit(self, raw: bytes, from_client: bool) -> tuple[bytes, str, str]:
        """Admit one transaction now (what a client's POST /txs does)."""
        try:
            tx = Transaction.decode(raw, max_bytes=self.rules.genesis.params.max_tx_bytes)
        except CodecError as exc:
            return b"", "malformed", str(exc)
        th = compute_tx_hash(self.rules.suite, tx.body)
        if self.mempool.is_known(th):
            return th, "known", ""
        if self.ledger.get_committed([th]):
            return th, "committed", ""
        try:
            check_tx_static(self.rules, tx, len(raw), self.ledger.get_member)
            check_tx_window(self.rules, tx, self.ledger.get_parent_info().height + 1)
        except TxRejected as exc:
            return th, exc.code, exc.message
        if not self._is_sig_ok(tx, th):
            return th, "bad_signature", "signature does not verify"
        try:
            self.mempool.process_add(PoolEntry(tx, th, self.rules.suite.hash(raw), len(raw)))
        except MempoolFull as exc:
            return th, "mempool_full", str(exc)
        self._on_admitted(raw, from_client)
        return th, "accepted", ""

    def submit_batch(self, raws: list[bytes], from_client: bool,
                     done: Callable[[Sequence[tuple[bytes, str, str]]], None]) -> None:
        self._later(1, lambda: done([self.submit(raw, from_client) for raw in raws]))

    def verify_many(self, items: list[tuple[Transaction, bytes]], done: Callable[[Mapping[bytes, bool]], None]) -> None:
        self._later(1, lambda: done({th + tx.signature: self._is_sig_ok(tx, th) for tx, th in items}))

    def get_verifying_tx(self, signed_hash: bytes) -> Transaction | None:
        return None

    def is_sig_verified(self, tx: Transaction, tx_hash: bytes) -> bool:
        return tx_hash + tx.signature in self._sig_ok

    def get_sig_checked(self, txs: Sequence[Transaction], tx_hashes: Sequence[bytes]) -> dict[bytes, bool]:
        return {th: True for tx, th in zip(txs, tx_hashes, strict=True) if self.is_sig_verified(tx, th)}
