"""State sync's light client: what a joining node checks before it trusts a snapshot, trusting only genesis.

A snapshot of the state after block H arrives with the header and commit of block H + 1 (execution is deferred:
header h + 1 carries the state root after h, so the pair that proves the state after H is H + 1's), the validator
path from genesis to H + 1, the commit of H that block H + 1 carries, the validator sets of the replay window and
the chunk list. :func:`verify_manifest` accepts it only if

1. the validator path verifies from the genesis set (:func:`qilian.sdk.verify.verify_validator_path`: every entry
   signed by its set and linked to the set trusted before it);
2. header H + 1 is signed by more than 2/3 of the set the path trusts at H + 1
   (:func:`qilian.sdk.verify.verify_header_and_commit`);
3. the commit of H hashes to header H + 1's ``last_commit_hash`` and names header H + 1's parent;
4. the chunk list recomputes header H + 1's ``state_root`` (:func:`qilian.state.snapshot.check_chunk_specs`).

Then the blocks of the replay window — H back to H + 1 − max(``tx_validity_blocks``, the evidence age) — are
checked by the hash chain alone, newest first (:func:`check_window_block`): block h's ID must be block h + 1's
``prev_block_id`` and its body must match its header. The commit of each window height h < H is the one block
h + 1 carries (bound by its ``last_commit_hash``), so no signature is checked and none can be forged. Each window
header's ``validators_hash`` must name one of the manifest's window sets, which binds those sets too.

Pure code: the node's IO (:mod:`qilian.node.statesync`) feeds it decoded messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

from qilian.crypto import get_suite
from qilian.execution.block import compute_txs_root
from qilian.execution.evidence import MAX_EVIDENCE_AGE_BLOCKS, compute_evidence_root
from qilian.p2p.messages import PathEntry, SnapshotManifest
from qilian.sdk.history import GOVERNANCE_TARGETS
from qilian.sdk.proofs import PATH_TYPE, PATH_VERSION
from qilian.sdk.verify import ProofInvalid, verify_header_and_commit, verify_validator_path
from qilian.state.snapshot import ChunkSpec, SnapshotInvalid, check_chunk_specs
from qilian.types.codec import CodecError, decode_raw, encode_trusted
from qilian.types.core import (
    BlockHeader,
    Commit,
    Evidence,
    Genesis,
    TxBody,
    ValidatorSet,
    compute_block_id,
    compute_commit_hash,
)

MIN_SNAPSHOT_HEIGHT: Final = 1
"""The lowest height a snapshot may be taken at (below it a joiner simply block-syncs from genesis)."""


class ManifestInvalid(Exception):
    """A snapshot manifest (or a window block) that does not prove what it claims; the message says which check
    failed. The peer that sent it is penalised."""


@dataclass(frozen=True, slots=True)
class TrustedSnapshot:
    """A snapshot whose manifest verified: what the joiner may now rely on."""

    height: int
    """H: the snapshot is the state after block H."""
    state_root: bytes
    """The state root after H (header H + 1's)."""
    receipts_root: bytes
    """The receipts root of block H (header H + 1's)."""
    block_id: bytes
    """ID of block H (header H + 1's ``prev_block_id``)."""
    next_header: BlockHeader
    """Header H + 1, proven by its commit."""
    next_commit: Commit
    """The commit of H + 1 (every signature checked)."""
    last_commit: Commit
    """The commit of H carried by block H + 1."""
    window_start: int
    """The first height of the replay window the joiner must fetch (1 when the chain is shorter)."""
    window_sets: dict[bytes, ValidatorSet]
    """The window's validator sets by hash."""
    path: tuple[PathEntry, ...]
    """The verified validator path (stored, so the joined node serves light clients and later joiners)."""
    chunks: tuple[ChunkSpec, ...]
    """The chunk list, tied to ``state_root``."""


def compute_window_length(genesis: Genesis) -> int:
    """How many blocks below the snapshot a joiner must hold: the replay window (a transaction committed at c may
    be replayed only up to ``c + tx_validity_blocks``, :func:`qilian.execution.rules.check_tx_window`) and the
    evidence window (evidence of height e is checked against e's validator set up to e + MAX_EVIDENCE_AGE_BLOCKS),
    whichever is longer."""
    return max(genesis.params.tx_validity_blocks, MAX_EVIDENCE_AGE_BLOCKS)


def compute_window_start(genesis: Genesis, height: int) -> int:
    """First height of the window of a snapshot at ``height``: the oldest block whose transactions could still be
    replayed, or whose evidence committed, in block ``height + 1``."""
    return max(1, height + 1 - compute_window_length(genesis))


def get_path_doc(path: Sequence[PathEntry]) -> dict[str, Any]:
    """A manifest's validator path as the API's ``qilian-validator-path/1`` document (only the fields the verifier
    reads), so :func:`verify_validator_path` — the one implementation light clients use — checks it."""
    entries = []
    for e in path:
        doc: dict[str, Any] = {"validators": e.validators.hex(), "header": {"encoded": e.header.hex()},
                               "commit": {"encoded": e.commit.hex()}}
        if e.parent_header or e.parent_commit:
            doc["parent"] = {"header": {"encoded": e.parent_header.hex()}, "commit": {"encoded": e.parent_commit.hex()}}
        entries.append(doc)
    return {"type": PATH_TYPE, "version": PATH_VERSION, "entries": entries}


def verify_manifest(genesis: Genesis, manifest: SnapshotManifest) -> TrustedSnapshot:
    """Checks 1–4 of the module docstring; raises ManifestInvalid naming the one that failed."""
    suite = get_suite(genesis.suite)
    h = manifest.height
    if h < MIN_SNAPSHOT_HEIGHT:
        raise ManifestInvalid("the manifest offers no snapshot")
    try:
        trusted = verify_validator_path(genesis, get_path_doc(manifest.path))
        header, commit = verify_header_and_commit(genesis, {"encoded": manifest.next_header.hex()},
                                                  {"encoded": manifest.next_commit.hex()}, trusted)
    except ProofInvalid as exc:
        raise ManifestInvalid(f"snapshot header not proven: {exc}") from None
    if header.height != h + 1:
        raise ManifestInvalid(f"the proving header is of height {header.height}, not {h + 1}")
    try:
        last_commit = Commit.decode(manifest.last_commit)
    except CodecError as exc:
        raise ManifestInvalid(f"the commit of height {h} does not decode: {exc}") from None
    if compute_commit_hash(suite, last_commit) != header.last_commit_hash:
        raise ManifestInvalid(f"the commit of height {h} is not the one header {h + 1} names")
    if last_commit.height != h or last_commit.block_id != header.prev_block_id:
        raise ManifestInvalid(f"the commit of height {h} is for another block")
    sets: dict[bytes, ValidatorSet] = {}
    for i, raw in enumerate(manifest.window_sets):
        try:
            vset = ValidatorSet.decode(raw)
        except CodecError as exc:
            raise ManifestInvalid(f"window validator set {i} does not decode: {exc}") from None
        sets[vset.compute_hash(suite)] = vset
    try:
        check_chunk_specs(suite.hash, header.state_root, manifest.chunks)
    except SnapshotInvalid as exc:
        raise ManifestInvalid(f"chunk list: {exc}") from None
    return TrustedSnapshot(h, header.state_root, header.receipts_root, header.prev_block_id, header, commit,
                           last_commit, compute_window_start(genesis, h), sets, manifest.path, manifest.chunks)


_TO_FIELD: Final = [f.name for f in fields(TxBody)].index("to")
"""Position of ``to`` in a transaction body's wire array."""


@dataclass(frozen=True, slots=True)
class WindowBlock:
    """A window block that checked out, reduced to what the joiner stores and indexes."""

    height: int
    """Its height."""
    raw: bytes
    """Its canonical bytes (stored as they are)."""
    header: BlockHeader
    """Its header."""
    last_commit: Commit | None
    """The commit of its parent it carries (the parent's commit as the joiner stores it)."""
    tx_hashes: tuple[bytes, ...]
    """Its transactions' body hashes (IDs), in order: the replay index."""
    gov_positions: tuple[int, ...]
    """Indexes of its governance transactions (``gov`` and ``regulator``): the governance index."""


def check_window_block(genesis: Genesis, snap: TrustedSnapshot, raw: bytes, expected_id: bytes) -> WindowBlock:
    """Check one window block, newest first, from its canonical bytes: its ID is ``expected_id`` (the
    ``prev_block_id`` of the block above it; the snapshot's ``block_id`` for H), its body matches its header
    (transactions by signed hash, count, evidence, carried commit), it lies in the window and its validator set
    is among the manifest's. Raises ManifestInvalid.

    The transactions are hashed straight from their decoded arrays — the signed hash from the transaction's
    canonical bytes, the ID from its body's — without building a structure per transaction: the block is
    authenticated by the hash chain, so only its hashes matter, and a window holds up to a thousand blocks."""
    suite = get_suite(genesis.suite)
    try:
        obj = decode_raw(raw)
        if type(obj) is not list or len(obj) != 4 or type(obj[1]) is not list or type(obj[3]) is not list:
            raise CodecError("a block is [header, txs, last_commit, evidence]")
        hd = BlockHeader.from_wire(obj[0])
        last_commit = None if obj[2] is None else Commit.from_wire(obj[2])
        evidence = tuple(Evidence.from_wire(e) for e in obj[3])
    except CodecError as exc:
        raise ManifestInvalid(f"a window block does not decode: {exc}") from None
    if not snap.window_start <= hd.height <= snap.height:
        raise ManifestInvalid(f"block {hd.height} is outside the window {snap.window_start}..{snap.height}")
    if compute_block_id(suite, hd) != expected_id:
        raise ManifestInvalid(f"block {hd.height} is not the one the chain above it names (hash chain broken)")
    txs = obj[1]
    if hd.tx_count != len(txs):
        raise ManifestInvalid(f"block {hd.height} holds {len(txs)} transactions; its header says {hd.tx_count}")
    for t in txs:
        if type(t) is not list or len(t) != 2 or type(t[0]) is not list or len(t[0]) != len(fields(TxBody)):
            raise ManifestInvalid(f"block {hd.height} holds a malformed transaction")
    h = suite.hash
    if hd.txs_root != compute_txs_root(suite, [h(encode_trusted(t)) for t in txs]):
        raise ManifestInvalid(f"block {hd.height} transactions do not match its header's txs_root")
    if hd.evidence_hash != compute_evidence_root(suite, evidence):
        raise ManifestInvalid(f"block {hd.height} evidence does not match its header")
    if hd.last_commit_hash != compute_commit_hash(suite, last_commit):
        raise ManifestInvalid(f"block {hd.height} carries a commit its header does not name")
    if hd.height > 1 and last_commit is None:
        raise ManifestInvalid(f"block {hd.height} carries no commit of its parent")
    if hd.validators_hash not in snap.window_sets:
        raise ManifestInvalid(f"the manifest lacks the validator set of height {hd.height}")
    return WindowBlock(hd.height, raw, hd, last_commit, tuple(h(encode_trusted(t[0])) for t in txs),
                       tuple(i for i, t in enumerate(txs) if t[0][_TO_FIELD] in GOVERNANCE_TARGETS))


__all__ = ["MIN_SNAPSHOT_HEIGHT", "ManifestInvalid", "TrustedSnapshot", "WindowBlock", "check_window_block",
           "compute_window_length", "compute_window_start", "get_path_doc", "verify_manifest"]
