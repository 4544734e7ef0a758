"""The state transition: validate a block against its parent, execute it, and build the next header's roots.

Pure code over a read-only state view: execution returns the writes and receipts instead of applying them, so
the storage layer can commit block, receipts and state in one transaction and a failed call leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from qilian.contracts import DEFAULT_FUEL, CallOutcome, Context
from qilian.crypto import merkle
from qilian.crypto.suite import Suite
from qilian.execution.contracts import ContractExecutor
from qilian.execution.env import BlockEnv, CallFailed, Overlay, StateReader, TxCall, Writes
from qilian.execution.evidence import (
    MAX_BLOCK_EVIDENCE,
    EvidenceInvalid,
    check_evidence,
    compute_evidence_root,
    get_evidence_writes,
)
from qilian.execution.messages import MAX_RECEIPT_ERROR, compute_receipt_error, quote
from qilian.execution.modules import MODULES, get_module
from qilian.execution.modules.gov import GOV_MODULE
from qilian.execution.modules.kv import MAX_KV_KEY, MAX_KV_VALUE
from qilian.execution.modules.regulator import check_sender_not_frozen, is_contract_frozen
from qilian.execution.params import get_chain_limits
from qilian.execution.rules import (
    ChainRules,
    MemberLookup,
    TxRejected,
    check_tx_static,
    check_tx_window,
    is_valid_tx_signature,
)
from qilian.types.codec import MAX_MESSAGE_BYTES, encode_array_of_encoded, encode_trusted
from qilian.types.core import (
    BLOCK_VERSION,
    MAX_BLOCK_TXS_BOUND,
    PRECOMMIT,
    STATUS_FAILED,
    STATUS_OK,
    Block,
    BlockHeader,
    ChainParams,
    Commit,
    Evidence,
    Receipt,
    Transaction,
    ValidatorSet,
    compute_block_id,
    compute_commit_hash,
    compute_evidence_hash,
    compute_signed_tx_hash,
    compute_tx_hash,
    compute_vote_sign_bytes,
)

StateKey = tuple[str, bytes]
_Overlay = Overlay


MAX_BLOCK_RECEIPT_BYTES: Final = 8 * 1024 * 1024
"""Encoded bytes all successful receipts of one block may take together (results and events); failed receipts are
small and bounded (MAX_FAILED_RECEIPT_BYTES each)."""
MAX_FAILED_RECEIPT_BYTES: Final = MAX_RECEIPT_ERROR + 128
"""Upper bound of a failed receipt's encoding (hash, status, bounded ASCII error, fuel)."""
assert MAX_BLOCK_RECEIPT_BYTES + MAX_BLOCK_TXS_BOUND * MAX_FAILED_RECEIPT_BYTES < MAX_MESSAGE_BYTES, \
    "a block's receipts must always decode under the codec's message limit"


class BlockInvalid(ValueError):
    """A block that breaks a rule. The message names the rule and, where there is one, the transaction."""


@dataclass(frozen=True, slots=True)
class BlockResult:
    """What executing a block produced; nothing is applied yet."""

    receipts: tuple[Receipt, ...]
    """One receipt per transaction, in block order."""
    writes: Writes
    """Net state writes of the whole block (None deletes)."""
    receipts_root: bytes
    """Merkle root over the receipts' canonical bytes (goes into the next header)."""
    receipts_bytes: bytes = b""
    """The receipts as the store keeps them: the canonical encoding of the list of them (made from each receipt's
    own encoding, so a full block's receipts are encoded once, not once for the root and again for the store)."""


def execute_tx(env: BlockEnv, tx: Transaction, tx_hash: bytes) -> tuple[Receipt, bytes]:
    """Run one transaction through the module its target names; on failure its writes and events are dropped.
    Returns the receipt and its canonical encoding (measured against the block's receipt budget, then kept for
    the receipts root and the store)."""
    overlay = env.state
    overlay.tx_writes = {}
    body = tx.body
    module = get_module(body.to)
    try:
        member = env.get_member(body.sender)
        if module is None or member is None:
            # Admission refuses both and a block carrying one is invalid, but a key revoked by an earlier
            # transaction of this very block is no member from here on.
            raise CallFailed(f"no module or contract named {quote(body.to)}" if module is None
                             else "sender is not a member (revoked)")
        call = TxCall(tx, tx_hash, member, env.rules.suite.compute_address(body.sender).hex())
        check_sender_not_frozen(env, call)  # a regulator's freeze: "[frozen] account … is frozen until …"
        try:
            out = module.execute(env, call)
        finally:
            if module.name == GOV_MODULE:
                env.process_forget()  # a governance call may have changed (or rolled back) governed state
    except CallFailed as exc:
        overlay.tx_writes = {}
        return _with_encoding(Receipt(tx_hash, STATUS_FAILED, compute_receipt_error(str(exc)), 0, None, ()))
    if out.status != STATUS_OK:
        overlay.tx_writes = {}
        return _with_encoding(Receipt(tx_hash, out.status, compute_receipt_error(out.error or "failed"), out.fuel,
                                      None, ()))
    receipt = Receipt(tx_hash, STATUS_OK, "", out.fuel, out.result, out.events)
    raw = receipt.encode()
    size = len(raw)
    if size > env.receipt_bytes_left:
        # The block's receipts must stay decodable (they are stored and served as one encoded list): once the
        # budget is spent, later calls fail — deterministically, on every node — and nothing of them is kept.
        overlay.tx_writes = {}
        return _with_encoding(Receipt(tx_hash, STATUS_FAILED, f"[limit] block receipt budget of "
                                                              f"{MAX_BLOCK_RECEIPT_BYTES} bytes exhausted; resubmit "
                                                              f"in a later block", out.fuel, None, ()))
    env.receipt_bytes_left -= size
    overlay.block_writes.update(overlay.tx_writes)
    overlay.tx_writes = {}
    return receipt, raw


def _with_encoding(receipt: Receipt) -> tuple[Receipt, bytes]:
    return receipt, receipt.encode()


def process_begin_block(env: BlockEnv) -> None:
    """Run every module's begin-of-block hook, in registry order (the validator set decided two blocks ago
    becomes the current one here); their writes join the block's."""
    for module in MODULES:
        env.state.tx_writes = {}
        module.begin_block(env)
        env.state.block_writes.update(env.state.tx_writes)
    env.state.tx_writes = {}


def process_end_block(env: BlockEnv) -> None:
    """Run every module's end-of-block hook, in registry order; their writes join the block's."""
    for module in MODULES:
        env.state.tx_writes = {}
        module.end_block(env)
        env.state.block_writes.update(env.state.tx_writes)
    env.state.tx_writes = {}


def execute_block(rules: ChainRules, state: StateReader, txs: Sequence[Transaction],
                  tx_hashes: Sequence[bytes], height: int = 0, time_ms: int = 0,
                  evidence: Sequence[Evidence] = ()) -> BlockResult:
    """Execute validated transactions in order. Deterministic: depends only on its arguments (``height`` and
    ``time_ms`` are the block's, what contracts see as ``ctx.height`` and ``ctx.time_ms``). The block's evidence
    is recorded in state first (``sys:evidence``), so this block's transactions — a governance proposal among
    them — already see it."""
    block_writes: Writes = {}
    block_writes.update(get_evidence_writes(rules.suite, evidence, height))
    overlay = Overlay(state, block_writes)
    limits = get_chain_limits(rules.genesis.params, overlay.get, height)  # governed: in force at this height
    executor = ContractExecutor(rules.suite, overlay, limits.max_block_fuel, refuse_frozen=True,
                                is_frozen=lambda address: is_contract_frozen(overlay.get, address, height),
                                prices=limits.prices)
    env = BlockEnv(rules, overlay, executor, height, time_ms, receipt_bytes_left=MAX_BLOCK_RECEIPT_BYTES)
    process_begin_block(env)
    done = [execute_tx(env, tx, h) for tx, h in zip(txs, tx_hashes, strict=True)]
    process_end_block(env)
    raws = [raw for _r, raw in done]
    root = merkle.compute_root(rules.suite.hash, raws)
    return BlockResult(tuple(r for r, _raw in done), block_writes, root, encode_array_of_encoded(raws))


def query_contract(rules: ChainRules, state: StateReader, address: str, method: str, args: list[Any],
                   height: int, time_ms: int, sender: str = "", fuel: int = DEFAULT_FUEL) -> CallOutcome:
    """A read-only call against ``state`` (no transaction, nothing written; a write fails the query)."""
    overlay = Overlay(state, {})
    ctx = Context(sender, "", height, time_ms, "", address, sender)
    prices = get_chain_limits(rules.genesis.params, overlay.get, height).prices  # as a transaction would pay
    return ContractExecutor(rules.suite, overlay, prices=prices).call(ctx, method, args, fuel, read_only=True)


def compute_txs_root(suite: Suite, signed_hashes: Sequence[bytes]) -> bytes:
    """Merkle root of a block's transactions' signed hashes (the leaves are the 32-byte hashes). Signed, not body
    hashes: with body hashes one block ID could stand for blocks whose transactions carry different signatures,
    and nodes would store and serve different bytes under it (docs/spec/encoding.md, "Block")."""
    return merkle.compute_root(suite.hash, signed_hashes)


def compute_empty_root(suite: Suite) -> bytes:
    """Merkle root of no leaves: the receipts root of the (non-existent) block 0."""
    return merkle.compute_root(suite.hash, [])


def check_commit(suite: Suite, chain_id: str, validators: ValidatorSet, commit: Commit, block_id: bytes,
                 height: int) -> None:
    """Raise BlockInvalid unless ``commit`` carries valid precommits for ``block_id`` by > 2/3 of the power.

    This is what a light client trusts: every signature is checked against the validator set, each validator
    counts once, and unknown signers are refused rather than ignored."""
    if commit.height != height:
        raise BlockInvalid(f"commit is for height {commit.height}, expected {height}")
    if commit.block_id != block_id:
        raise BlockInvalid(f"commit is for block {commit.block_id.hex()[:16]}…, expected {block_id.hex()[:16]}…")
    sign_bytes = compute_vote_sign_bytes(chain_id, PRECOMMIT, commit.height, commit.round, commit.block_id)
    seen: set[bytes] = set()
    power = 0
    for cs in commit.signatures:
        v = validators.get_by_address(cs.validator)
        if v is None:
            raise BlockInvalid(f"commit signature by {cs.validator.hex()}, which is not a validator")
        if cs.validator in seen:
            raise BlockInvalid(f"commit has two signatures by validator {cs.validator.hex()}")
        seen.add(cs.validator)
        if not suite.verify(v.public_key, sign_bytes, cs.signature):
            raise BlockInvalid(f"commit signature by validator {cs.validator.hex()} does not verify")
        power += v.power
    if 3 * power <= 2 * validators.total_power:
        raise BlockInvalid(f"commit carries {power} of {validators.total_power} voting power; more than 2/3 needed")


@dataclass(frozen=True, slots=True)
class ParentInfo:
    """What a block's validity depends on from the chain so far."""

    height: int
    """Height of the parent (0 before the first block)."""
    block_id: bytes
    """Parent block ID (empty before the first block)."""
    time_ms: int
    """Parent's time (genesis time before the first block)."""
    state_root: bytes
    """State root after executing the parent."""
    receipts_root: bytes
    """Receipts root of the parent."""
    validators: ValidatorSet
    """Validator set of the child's height (``current`` in the parent's state): it signs the child."""
    next_validators: ValidatorSet | None = None
    """Set of the height after the child (``next`` in the parent's state); None: the same as ``validators``."""
    last_validators: ValidatorSet | None = None
    """Set of the parent's own height, which signed the parent's commit; None: the same as ``validators``."""
    get_member: MemberLookup | None = None
    """Membership in the parent's state (None: genesis membership — a state-less test)."""
    params: ChainParams | None = None
    """The block limits in force at the child's height, from the parent's state (execution/params.py); None:
    genesis's (a state-less test)."""

    def get_params(self, genesis: ChainParams) -> ChainParams:
        return genesis if self.params is None else self.params
    get_validators_at: Callable[[int], ValidatorSet | None] | None = None
    """The validator set that signed an earlier height (for evidence); None: this parent cannot check evidence,
    and a block carrying some is refused."""
    is_evidence_committed: Callable[[bytes], bool] | None = None
    """Whether an evidence hash is recorded in the parent's state (committed before); None as above."""

    def get_next_validators(self) -> ValidatorSet:
        return self.validators if self.next_validators is None else self.next_validators

    def get_last_validators(self) -> ValidatorSet:
        return self.validators if self.last_validators is None else self.last_validators


def check_block(rules: ChainRules, parent: ParentInfo, block: Block, tx_hashes: Sequence[bytes],
                is_committed: Callable[[bytes], bool], sig_checked: Mapping[bytes, bool] | None = None) -> None:
    """Raise BlockInvalid unless ``block`` is a valid child of ``parent``.

    ``tx_hashes`` are the (body) hashes of ``block.txs`` (computed once by the caller); ``is_committed`` answers
    whether a hash is already on chain (replay); ``sig_checked`` holds signatures already verified (the mempool
    cache). The signed hashes that ``txs_root`` commits to are computed here, from the transactions themselves,
    so no caller can vouch for bytes other than the ones the block holds."""
    suite = rules.suite
    h = block.header
    if h.version != BLOCK_VERSION:
        raise BlockInvalid(f"block {h.height} is of protocol version {h.version}; this node runs {BLOCK_VERSION}")
    if h.chain_id != rules.chain_id:
        raise BlockInvalid(f"block is for chain {quote(h.chain_id)}")
    if h.height != parent.height + 1:
        raise BlockInvalid(f"block height {h.height} does not follow {parent.height}")
    if h.prev_block_id != parent.block_id:
        raise BlockInvalid(f"block {h.height} does not point to its parent")
    if h.time_ms < parent.time_ms:
        raise BlockInvalid(f"block {h.height} time {h.time_ms} is before its parent's {parent.time_ms}")
    if h.state_root != parent.state_root:
        raise BlockInvalid(f"block {h.height} state root does not match the state after block {parent.height}")
    if h.receipts_root != parent.receipts_root:
        raise BlockInvalid(f"block {h.height} receipts root does not match block {parent.height}'s receipts")
    if h.validators_hash != parent.validators.compute_hash(suite):
        raise BlockInvalid(f"block {h.height} names a different validator set")
    if h.next_validators_hash != parent.get_next_validators().compute_hash(suite):
        raise BlockInvalid(f"block {h.height} names a different next validator set")
    if parent.validators.get_by_address(h.proposer) is None:
        raise BlockInvalid(f"block {h.height} proposer {h.proposer.hex()} is not a validator")
    if h.tx_count != len(block.txs) or len(tx_hashes) != len(block.txs):
        raise BlockInvalid(f"block {h.height} tx_count {h.tx_count} but it holds {len(block.txs)}")
    max_txs = parent.get_params(rules.genesis.params).max_block_txs
    if len(block.txs) > max_txs:
        raise BlockInvalid(f"block {h.height} holds more than {max_txs} transactions")
    check_block_evidence(rules, parent, block)
    if parent.height == 0:
        if block.last_commit is not None or h.last_commit_hash != b"":
            raise BlockInvalid("block 1 must not carry a previous commit")
    else:
        if block.last_commit is None:
            raise BlockInvalid(f"block {h.height} lacks the commit of block {parent.height}")
        if h.last_commit_hash != compute_commit_hash(suite, block.last_commit):
            raise BlockInvalid(f"block {h.height} last_commit_hash does not match its last commit")
        check_commit(suite, rules.chain_id, parent.get_last_validators(), block.last_commit, parent.block_id,
                     parent.height)
    encoded = [encode_trusted(tx.to_wire()) for tx in block.txs]
    if h.txs_root != compute_txs_root(suite, [suite.hash(raw) for raw in encoded]):
        raise BlockInvalid(f"block {h.height} transactions root does not match its signed transactions")
    seen: set[bytes] = set()
    for i, (tx, th, raw) in enumerate(zip(block.txs, tx_hashes, encoded, strict=True)):
        where = f"block {h.height} tx {i} ({th.hex()[:16]}…)"
        if th in seen:
            # By body hash: two signed versions of one body are one transaction, and it runs once.
            raise BlockInvalid(f"{where}: duplicate transaction in the block")
        seen.add(th)
        try:
            check_tx_static(rules, tx, len(raw), parent.get_member)
            check_tx_window(rules, tx, h.height)
        except TxRejected as exc:
            raise BlockInvalid(f"{where}: {exc.message}") from None
        if is_committed(th):
            raise BlockInvalid(f"{where}: already committed in an earlier block")
        if not (sig_checked or {}).get(th) and not is_valid_tx_signature(suite, tx, th):
            raise BlockInvalid(f"{where}: signature does not verify")


def check_block_evidence(rules: ChainRules, parent: ParentInfo, block: Block) -> None:
    """Raise BlockInvalid unless the block's evidence is bounded, matches ``evidence_hash``, holds no item twice,
    and every item passes :func:`~qilian.execution.evidence.check_evidence` against the parent's chain."""
    suite = rules.suite
    h = block.header
    if len(block.evidence) > MAX_BLOCK_EVIDENCE:
        raise BlockInvalid(f"block {h.height} carries {len(block.evidence)} evidence items, over the limit of "
                           f"{MAX_BLOCK_EVIDENCE}")
    if h.evidence_hash != compute_evidence_root(suite, block.evidence):
        raise BlockInvalid(f"block {h.height} evidence does not match its evidence_hash")
    if not block.evidence:
        return
    get_validators_at, is_committed = parent.get_validators_at, parent.is_evidence_committed
    if get_validators_at is None or is_committed is None:
        raise BlockInvalid(f"block {h.height} carries evidence, which cannot be checked here")
    seen: set[bytes] = set()
    for i, ev in enumerate(block.evidence):
        eh = compute_evidence_hash(suite, ev)
        if eh in seen:
            raise BlockInvalid(f"block {h.height} evidence {i}: the same evidence twice")
        seen.add(eh)
        try:
            check_evidence(suite, rules.chain_id, ev, h.height, get_validators_at, is_committed)
        except EvidenceInvalid as exc:
            raise BlockInvalid(f"block {h.height} evidence {i}: {exc}") from None


def compute_tx_hashes(suite: Suite, txs: Sequence[Transaction]) -> list[bytes]:
    """Hashes (IDs: body hashes) of a block's transactions, in order."""
    return [compute_tx_hash(suite, tx.body) for tx in txs]


def compute_signed_tx_hashes(suite: Suite, txs: Sequence[Transaction]) -> list[bytes]:
    """Signed hashes of a block's transactions, in order (the leaves of ``txs_root``)."""
    return [compute_signed_tx_hash(suite, tx) for tx in txs]


def make_header(rules: ChainRules, parent: ParentInfo, time_ms: int, signed_hashes: Sequence[bytes],
                last_commit: Commit | None, proposer: bytes, evidence: Sequence[Evidence] = ()) -> BlockHeader:
    """The header a proposer builds on ``parent`` over its transactions' signed hashes; time is an input (the pure
    core has no clock)."""
    suite = rules.suite
    return BlockHeader(
        version=BLOCK_VERSION,
        chain_id=rules.chain_id,
        height=parent.height + 1,
        time_ms=max(time_ms, parent.time_ms),
        prev_block_id=parent.block_id,
        last_commit_hash=compute_commit_hash(suite, last_commit),
        txs_root=compute_txs_root(suite, signed_hashes),
        tx_count=len(signed_hashes),
        state_root=parent.state_root,
        receipts_root=parent.receipts_root,
        validators_hash=parent.validators.compute_hash(suite),
        next_validators_hash=parent.get_next_validators().compute_hash(suite),
        proposer=proposer,
        evidence_hash=compute_evidence_root(suite, evidence),
    )


def get_block_id(suite: Suite, block: Block) -> bytes:
    """The block's ID."""
    return compute_block_id(suite, block.header)


__all__ = [
    "MAX_KV_KEY",
    "MAX_KV_VALUE",
    "BlockInvalid",
    "BlockResult",
    "CallFailed",
    "ParentInfo",
    "StateReader",
    "check_block",
    "check_block_evidence",
    "check_commit",
    "compute_empty_root",
    "compute_signed_tx_hashes",
    "compute_tx_hashes",
    "compute_txs_root",
    "execute_block",
    "get_block_id",
    "make_header",
    "query_contract",
]
