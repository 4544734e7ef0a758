"""Light-client verification: check what a node returns, trusting only the chain's genesis validator keys.

A node's answer to ``GET /txs/{hash}`` or ``GET /state/...`` carries the canonical bytes of the header, its
commit and the Merkle or state proof. These functions recompute everything from those bytes: the header hash
must equal the commit's block ID, the commit must hold valid precommit signatures of more than 2/3 of the power
of the validator set of that height, and the proof must lead from the record to a root in that header. Nothing
the node says in its readable JSON fields is trusted.

Validator sets change by governance (a change decided in block h signs from h+2). The light client follows them
from genesis through a **validator path** (:func:`verify_validator_path`; ``GET /gov/validators/path``): one entry
per height whose signing set differs from the previous height's, each proven either sequentially (the previous
height's header, signed by the trusted set, names the new set as ``next_validators_hash``) or by skipping (more
than 1/3 of the trusted set's power signed the new height's commit — at least one honest validator vouches for
it — and more than 2/3 of the new set did).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qilian.crypto import get_suite, merkle
from qilian.execution.block import BlockInvalid, check_commit
from qilian.sdk.proofs import PATH_TYPE, PATH_VERSION, parse_merkle_doc
from qilian.state import StateProof, verify_state_proof
from qilian.types.codec import CodecError, from_json_value
from qilian.types.core import (
    PRECOMMIT,
    BlockHeader,
    Commit,
    Genesis,
    Receipt,
    Transaction,
    ValidatorSet,
    compute_block_id,
    compute_tx_hash,
    compute_vote_sign_bytes,
)


class ProofInvalid(Exception):
    """A proof that does not check out; the message says which step failed."""


@dataclass(frozen=True)
class VerifiedTx:
    """A transaction proven to be in a block decided by the genesis validators."""

    tx: Transaction
    """The transaction, decoded from its proven bytes."""
    tx_hash: bytes
    """Its hash (ID: the body's), recomputed."""
    height: int
    """Height of its block (from the signed header)."""
    header: BlockHeader
    """Its block's header, proven by the commit."""
    receipt: Receipt | None
    """The receipt, when the response proved it (it needs the next block's header)."""
    signers: int = 0
    """Validators whose precommit signatures on the block verified (counted from the decoded commit, never from
    the response's readable JSON)."""


def _hex(s: Any, what: str) -> bytes:
    if not isinstance(s, str):
        raise ProofInvalid(f"{what} missing")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise ProofInvalid(f"{what} is not hex") from None


@dataclass(frozen=True)
class TrustedSets:
    """Validator sets a light client verified from genesis: (first height it signs, set), in height order."""

    spans: tuple[tuple[int, ValidatorSet], ...]
    """The genesis set from height 1, then each proven change."""

    def get_set(self, height: int) -> tuple[int, ValidatorSet]:
        """(first height, set) of the trusted span covering ``height``."""
        best = self.spans[0]
        for span in self.spans:
            if span[0] <= height:
                best = span
        return best


def _decode_header_commit(genesis: Genesis, header_doc: Any, commit_doc: Any) -> tuple[BlockHeader, Commit]:
    try:
        header = BlockHeader.decode(_hex((header_doc or {}).get("encoded"), "header.encoded"))
        commit = Commit.decode(_hex((commit_doc or {}).get("encoded"), "commit.encoded"))
    except CodecError as exc:
        raise ProofInvalid(f"malformed header or commit: {exc}") from None
    if header.chain_id != genesis.chain_id:
        raise ProofInvalid(f"header is for chain {header.chain_id!r}, not {genesis.chain_id!r}")
    return header, commit


def _check_signed(genesis: Genesis, vset: ValidatorSet, header: BlockHeader, commit: Commit, what: str) -> None:
    suite = get_suite(genesis.suite)
    try:
        check_commit(suite, genesis.chain_id, vset, commit, compute_block_id(suite, header), header.height)
    except BlockInvalid as exc:
        raise ProofInvalid(f"commit does not prove {what}: {exc}") from None


def compute_trusted_power(genesis: Genesis, trusted: ValidatorSet, commit: Commit) -> int:
    """Power of the trusted set's validators whose precommit signatures in ``commit`` verify (each once)."""
    suite = get_suite(genesis.suite)
    sign_bytes = compute_vote_sign_bytes(genesis.chain_id, PRECOMMIT, commit.height, commit.round, commit.block_id)
    seen: set[bytes] = set()
    power = 0
    for cs in commit.signatures:
        v = trusted.get_by_address(cs.validator)
        if v is not None and cs.validator not in seen and suite.verify(v.public_key, sign_bytes, cs.signature):
            seen.add(cs.validator)
            power += v.power
    return power


def verify_validator_path(genesis: Genesis, path: Any) -> TrustedSets:
    """Follow a validator path (``qilian-validator-path/1``) from genesis; raises ProofInvalid naming the entry
    that does not check. Every entry's set signs its header (> 2/3) and is linked to the set trusted before it,
    sequentially (``parent``) or by the 1/3 trust rule."""
    suite = get_suite(genesis.suite)
    spans: list[tuple[int, ValidatorSet]] = [(1, genesis.validators)]
    if path is None:
        return TrustedSets(tuple(spans))
    if not isinstance(path, dict) or path.get("type") != PATH_TYPE or path.get("version") != PATH_VERSION:
        raise ProofInvalid(f"not a validator path ({PATH_TYPE} version {PATH_VERSION})")
    entries = path.get("entries")
    if not isinstance(entries, list):
        raise ProofInvalid("validator path has no entries")
    for i, e in enumerate(entries):
        where = f"validator path entry {i}"
        if not isinstance(e, dict):
            raise ProofInvalid(f"{where} is malformed")
        try:
            vset = ValidatorSet.decode(_hex(e.get("validators"), f"{where} validators"))
        except CodecError as exc:
            raise ProofInvalid(f"{where}: malformed validator set: {exc}") from None
        header, commit = _decode_header_commit(genesis, e.get("header"), e.get("commit"))
        first, trusted = spans[-1]
        if header.height <= first:
            raise ProofInvalid(f"{where}: height {header.height} does not follow the trusted set of height {first}")
        if header.validators_hash != vset.compute_hash(suite) or not vset.validators:
            raise ProofInvalid(f"{where}: the header at height {header.height} is not signed by the given set")
        _check_signed(genesis, vset, header, commit, f"{where} (height {header.height})")
        parent = e.get("parent")
        if parent is not None:
            ph, pc = _decode_header_commit(genesis, parent.get("header"), parent.get("commit"))
            if ph.height != header.height - 1 or header.prev_block_id != compute_block_id(suite, ph):
                raise ProofInvalid(f"{where}: parent is not the header before height {header.height}")
            if ph.validators_hash != trusted.compute_hash(suite):
                raise ProofInvalid(f"{where}: parent at height {ph.height} is not signed by the trusted set")
            _check_signed(genesis, trusted, ph, pc, f"{where} parent")
            if ph.next_validators_hash != header.validators_hash:
                raise ProofInvalid(f"{where}: parent at height {ph.height} names another next validator set")
        elif 3 * compute_trusted_power(genesis, trusted, commit) <= trusted.total_power:
            raise ProofInvalid(f"{where}: at most 1/3 of the trusted set's power signed height {header.height}; the "
                               f"path needs the parent header there (sequential link)")
        spans.append((header.height, vset))
    return TrustedSets(tuple(spans))


def verify_header(genesis: Genesis, header_doc: Any, commit_doc: Any, trusted: TrustedSets | None = None
                  ) -> BlockHeader:
    """Parse a header and its commit from their canonical hex and check the commit against the validator set
    of its height (``trusted``: from :func:`verify_validator_path`; None: the genesis set only)."""
    return verify_header_and_commit(genesis, header_doc, commit_doc, trusted)[0]


def verify_header_and_commit(genesis: Genesis, header_doc: Any, commit_doc: Any,
                             trusted: TrustedSets | None = None) -> tuple[BlockHeader, Commit]:
    """:func:`verify_header`, also returning the verified commit (every signature in it checked)."""
    suite = get_suite(genesis.suite)
    header, commit = _decode_header_commit(genesis, header_doc, commit_doc)
    sets = trusted or verify_validator_path(genesis, None)
    first, vset = sets.get_set(header.height)
    if header.validators_hash != vset.compute_hash(suite):
        raise ProofInvalid(f"header {header.height} names a validator set other than the one trusted from height "
                           f"{first}" + (" (genesis's)" if first == 1 else "") + "; give the validator path up to "
                           f"this height (GET /gov/validators/path?to={header.height})")
    _check_signed(genesis, vset, header, commit, "the header")
    return header, commit


def _merkle(doc: Any) -> merkle.MerkleProof:
    try:
        return parse_merkle_doc(doc)
    except ValueError as exc:
        raise ProofInvalid(str(exc)) from None


def _get_trusted(genesis: Genesis, resp: Any, trusted: TrustedSets | None) -> TrustedSets:
    """The sets a response's headers are checked against: ``trusted`` when the caller verified a path itself,
    else the ``validator_path`` the node attaches whenever the set has changed since genesis (verified here from
    genesis, so a forged path fails like a forged header), else genesis's set alone."""
    if trusted is not None:
        return trusted
    return verify_validator_path(genesis, resp.get("validator_path") if isinstance(resp, dict) else None)


def verify_tx_response(genesis: Genesis, resp: dict[str, Any], require_receipt: bool = True,
                       trusted: TrustedSets | None = None, tx_hash: bytes | None = None) -> VerifiedTx:
    """Verify a ``GET /txs/{hash}`` response; raises ProofInvalid naming the failed step.

    Two hashes are recomputed from the encoded transaction: its ID (the body hash), which must equal the one asked
    for (``tx_hash``, else the response's ``hash``), and its signed hash (body, key and signature), the Merkle leaf
    under ``txs_root`` — so the proof covers the very signature the node returned, not just the body."""
    suite = get_suite(genesis.suite)
    trusted = _get_trusted(genesis, resp, trusted)
    try:
        raw = _hex(resp["tx"]["encoded"], "tx.encoded")
        tx = Transaction.decode(raw)
    except (KeyError, TypeError, CodecError) as exc:
        raise ProofInvalid(f"malformed transaction: {exc}") from None
    body_hash = compute_tx_hash(suite, tx.body)
    if tx_hash is not None and body_hash != tx_hash:
        raise ProofInvalid(f"the transaction returned is {body_hash.hex()[:16]}…, not the {tx_hash.hex()[:16]}… asked "
                           f"for")
    if resp.get("hash") and _hex(resp["hash"], "hash") != body_hash:
        raise ProofInvalid("transaction bytes do not hash to the claimed hash")
    signed_hash = suite.hash(raw)  # raw decoded, hence canonical: this is compute_signed_tx_hash(suite, tx)
    proof = resp.get("proof") or {}
    tp = proof.get("tx") or {}
    header, commit = verify_header_and_commit(genesis, tp.get("header"), tp.get("commit"), trusted)
    mp = _merkle(tp.get("merkle"))
    if mp.size != header.tx_count:
        # RFC 9162 proofs pin the size only through the path's shape; take it from the signed header.
        raise ProofInvalid(f"proof claims {mp.size} transactions; the header says {header.tx_count}")
    if not merkle.is_valid_proof(suite.hash, header.txs_root, signed_hash, mp):
        raise ProofInvalid("transaction is not in the block: Merkle proof of its signed bytes does not lead to "
                           "txs_root")
    receipt = None
    rp = proof.get("receipt")
    if rp is None:
        if require_receipt:
            raise ProofInvalid("no receipt proof (the next block is not committed yet)")
    else:
        try:
            rbytes = _hex(resp["receipt"]["encoded"], "receipt.encoded")
            receipt = Receipt.decode(rbytes)
        except (KeyError, TypeError, CodecError) as exc:
            raise ProofInvalid(f"malformed receipt: {exc}") from None
        if receipt.tx_hash != body_hash:
            raise ProofInvalid("receipt is for another transaction")
        nheader = verify_header(genesis, rp.get("header"), rp.get("commit"), trusted)
        if nheader.height != header.height + 1 or nheader.prev_block_id != compute_block_id(suite, header):
            raise ProofInvalid("receipt header is not the child of the transaction's block")
        rmp = _merkle(rp.get("merkle"))
        if rmp.index != mp.index or rmp.size != header.tx_count:
            raise ProofInvalid("receipt position does not match the transaction's position")
        if not merkle.is_valid_proof(suite.hash, nheader.receipts_root, rbytes, rmp):
            raise ProofInvalid("receipt is not committed: Merkle proof does not lead to receipts_root")
    return VerifiedTx(tx, body_hash, header.height, header, receipt, len(commit.signatures))


def verify_state_response(genesis: Genesis, resp: dict[str, Any], trusted: TrustedSets | None = None
                          ) -> bytes | None:
    """Verify a ``GET /state/{ns}/{key}`` response; returns the proven value (None = proven absent)."""
    suite = get_suite(genesis.suite)
    header = verify_header(genesis, resp.get("header"), resp.get("commit"), _get_trusted(genesis, resp, trusted))
    try:
        namespace = resp["namespace"]
        key = _hex(resp["key"], "key")
        value = None if resp.get("value") is None else _hex(resp["value"], "value")
        proof = StateProof.from_wire(from_json_value(resp["proof"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofInvalid(f"malformed state proof: {exc}") from None
    if not isinstance(namespace, str):
        raise ProofInvalid("namespace must be text")
    if not verify_state_proof(suite.hash, header.state_root, namespace, key, value, proof):
        raise ProofInvalid("state proof does not lead to the header's state_root")
    return value
