"""Light-client verification: check what a node returns, trusting only the chain's genesis validator keys.

A node's answer to ``GET /txs/{hash}`` or ``GET /state/...`` carries the canonical bytes of the header, its
commit and the Merkle or state proof. These functions recompute everything from those bytes: the header hash
must equal the commit's block ID, the commit must hold valid precommit signatures of more than 2/3 of the
genesis validators' power, and the proof must lead from the record to a root in that header. Nothing the node
says in its readable JSON fields is trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qilian.crypto import get_suite, merkle
from qilian.execution.block import BlockInvalid, check_commit
from qilian.sdk.proofs import parse_merkle_doc
from qilian.state import StateProof, verify_state_proof
from qilian.types.codec import CodecError, from_json_value
from qilian.types.core import BlockHeader, Commit, Genesis, Receipt, Transaction, compute_block_id, compute_tx_hash


class ProofInvalid(Exception):
    """A proof that does not check out; the message says which step failed."""


@dataclass(frozen=True)
class VerifiedTx:
    """A transaction proven to be in a block decided by the genesis validators."""

    tx: Transaction
    """The transaction, decoded from its proven bytes."""
    tx_hash: bytes
    """Its hash, recomputed."""
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


def verify_header(genesis: Genesis, header_doc: Any, commit_doc: Any) -> BlockHeader:
    """Parse a header and its commit from their canonical hex and check the commit against genesis validators."""
    return verify_header_and_commit(genesis, header_doc, commit_doc)[0]


def verify_header_and_commit(genesis: Genesis, header_doc: Any, commit_doc: Any) -> tuple[BlockHeader, Commit]:
    """:func:`verify_header`, also returning the verified commit (every signature in it checked)."""
    suite = get_suite(genesis.suite)
    try:
        header = BlockHeader.decode(_hex((header_doc or {}).get("encoded"), "header.encoded"))
        commit = Commit.decode(_hex((commit_doc or {}).get("encoded"), "commit.encoded"))
    except CodecError as exc:
        raise ProofInvalid(f"malformed header or commit: {exc}") from None
    if header.chain_id != genesis.chain_id:
        raise ProofInvalid(f"header is for chain {header.chain_id!r}, not {genesis.chain_id!r}")
    if header.validators_hash != genesis.validators.compute_hash(suite):
        raise ProofInvalid("header names a validator set other than genesis's")
    try:
        check_commit(suite, genesis.chain_id, genesis.validators, commit, compute_block_id(suite, header),
                     header.height)
    except BlockInvalid as exc:
        raise ProofInvalid(f"commit does not prove the header: {exc}") from None
    return header, commit


def _merkle(doc: Any) -> merkle.MerkleProof:
    try:
        return parse_merkle_doc(doc)
    except ValueError as exc:
        raise ProofInvalid(str(exc)) from None


def verify_tx_response(genesis: Genesis, resp: dict[str, Any], require_receipt: bool = True) -> VerifiedTx:
    """Verify a ``GET /txs/{hash}`` response; raises ProofInvalid naming the failed step."""
    suite = get_suite(genesis.suite)
    try:
        tx = Transaction.decode(_hex(resp["tx"]["encoded"], "tx.encoded"))
    except (KeyError, TypeError, CodecError) as exc:
        raise ProofInvalid(f"malformed transaction: {exc}") from None
    tx_hash = compute_tx_hash(suite, tx.body)
    if resp.get("hash") and _hex(resp["hash"], "hash") != tx_hash:
        raise ProofInvalid("transaction bytes do not hash to the claimed hash")
    proof = resp.get("proof") or {}
    tp = proof.get("tx") or {}
    header, commit = verify_header_and_commit(genesis, tp.get("header"), tp.get("commit"))
    mp = _merkle(tp.get("merkle"))
    if mp.size != header.tx_count:
        # RFC 9162 proofs pin the size only through the path's shape; take it from the signed header.
        raise ProofInvalid(f"proof claims {mp.size} transactions; the header says {header.tx_count}")
    if not merkle.is_valid_proof(suite.hash, header.txs_root, tx_hash, mp):
        raise ProofInvalid("transaction is not in the block: Merkle proof does not lead to txs_root")
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
        if receipt.tx_hash != tx_hash:
            raise ProofInvalid("receipt is for another transaction")
        nheader = verify_header(genesis, rp.get("header"), rp.get("commit"))
        if nheader.height != header.height + 1 or nheader.prev_block_id != compute_block_id(suite, header):
            raise ProofInvalid("receipt header is not the child of the transaction's block")
        rmp = _merkle(rp.get("merkle"))
        if rmp.index != mp.index or rmp.size != header.tx_count:
            raise ProofInvalid("receipt position does not match the transaction's position")
        if not merkle.is_valid_proof(suite.hash, nheader.receipts_root, rbytes, rmp):
            raise ProofInvalid("receipt is not committed: Merkle proof does not lead to receipts_root")
    return VerifiedTx(tx, tx_hash, header.height, header, receipt, len(commit.signatures))


def verify_state_response(genesis: Genesis, resp: dict[str, Any]) -> bytes | None:
    """Verify a ``GET /state/{ns}/{key}`` response; returns the proven value (None = proven absent)."""
    suite = get_suite(genesis.suite)
    header = verify_header(genesis, resp.get("header"), resp.get("commit"))
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
