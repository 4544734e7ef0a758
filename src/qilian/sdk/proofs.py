"""Proof documents: built by the node's read side, checked by the light client — one module for both ends.

A proof travels as JSON. Building it (from decoded blocks, receipts and state proofs) and parsing it back (from an
untrusted answer) live side by side so the two can never drift apart: the API serves exactly what
:mod:`qilian.sdk.verify` and the explorer's in-browser verifier read. Every function is pure — no store, no clock
— so the same code runs in the node, in the SDK and in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qilian.crypto import merkle
from qilian.crypto.suite import Suite
from qilian.state import StateProof
from qilian.types.codec import to_json_value
from qilian.types.core import (
    Block,
    BlockHeader,
    Commit,
    Receipt,
    ValidatorSet,
    compute_block_id,
    compute_signed_tx_hash,
)


def get_header_doc(suite: Suite, header: BlockHeader) -> dict[str, Any]:
    """A header as JSON: readable fields for people, ``encoded`` (canonical bytes) for verifiers."""
    return {
        "block_id": compute_block_id(suite, header).hex(),
        "chain_id": header.chain_id,
        "height": header.height,
        "time_ms": header.time_ms,
        "prev_block_id": header.prev_block_id.hex(),
        "last_commit_hash": header.last_commit_hash.hex(),
        "txs_root": header.txs_root.hex(),
        "tx_count": header.tx_count,
        "state_root": header.state_root.hex(),
        "receipts_root": header.receipts_root.hex(),
        "validators_hash": header.validators_hash.hex(),
        "next_validators_hash": header.next_validators_hash.hex(),
        "version": header.version,
        "proposer": header.proposer.hex(),
        "evidence_hash": header.evidence_hash.hex(),
        "encoded": header.encode().hex(),
    }


def get_commit_doc(commit: Commit) -> dict[str, Any]:
    """A commit as JSON, with its canonical bytes in ``encoded``."""
    return {
        "height": commit.height,
        "round": commit.round,
        "block_id": commit.block_id.hex(),
        "signatures": [{"validator": s.validator.hex(), "signature": s.signature.hex()} for s in commit.signatures],
        "encoded": commit.encode().hex(),
    }


PATH_TYPE = "qilian-validator-path"
"""Type tag of a validator-set change path (docs/governance.md, "Light clients")."""
PATH_VERSION = 1


def get_validator_path_doc(suite: Suite, entries: Sequence[tuple[BlockHeader, Commit, ValidatorSet,
                                                                   tuple[BlockHeader, Commit] | None]]
                           ) -> dict[str, Any]:
    """A validator-set change path: for each height h whose signing set differs from h−1's, in height order, the
    header and commit of h and the set V that signs it, and — where the 1/3 trust rule cannot carry the light
    client from the previous set — the header and commit of h−1 (``parent``: signed by the previous set, its
    ``next_validators_hash`` names V)."""
    out = []
    for header, commit, vset, parent in entries:
        e: dict[str, Any] = {"height": header.height, "validators": vset.encode().hex(),
                             "header": get_header_doc(suite, header), "commit": get_commit_doc(commit)}
        if parent is not None:
            e["parent"] = {"header": get_header_doc(suite, parent[0]), "commit": get_commit_doc(parent[1])}
        out.append(e)
    return {"type": PATH_TYPE, "version": PATH_VERSION, "entries": out}


def get_validator_path_doc_from_encoded(suite: Suite, entries: Sequence[tuple[bytes, bytes, bytes, bytes, bytes]]
                                        ) -> dict[str, Any]:
    """:func:`get_validator_path_doc` from canonical bytes: (validator set, header, commit, parent header, parent
    commit) per entry, the parent pair empty when absent — the form a state-synced node keeps and P2P carries
    (:class:`qilian.p2p.messages.PathEntry`)."""
    return get_validator_path_doc(suite, [
        (BlockHeader.decode(header), Commit.decode(commit), ValidatorSet.decode(vset),
         (BlockHeader.decode(parent_header), Commit.decode(parent_commit)) if parent_header else None)
        for vset, header, commit, parent_header, parent_commit in entries])


def get_merkle_doc(proof: merkle.MerkleProof) -> dict[str, Any]:
    """A Merkle inclusion proof as JSON."""
    return {"index": proof.index, "size": proof.size, "path": [h.hex() for h in proof.path]}


def parse_merkle_doc(doc: Any) -> merkle.MerkleProof:
    """Inverse of :func:`get_merkle_doc` for untrusted input; raises ValueError on any malformed shape."""
    try:
        return merkle.MerkleProof.from_wire([doc["index"], doc["size"], [bytes.fromhex(h) for h in doc["path"]]])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed Merkle proof: {exc}") from None


def compute_tx_merkle_proof(suite: Suite, block: Block, index: int) -> merkle.MerkleProof:
    """Proof that ``block.txs[index]`` is under its header's ``txs_root``. The leaves are the signed hashes
    (:func:`~qilian.types.core.compute_signed_tx_hash`): the proof covers the exact signed bytes the chain agreed
    on, so a verifier recomputes the leaf from the encoded transaction it was given, signature included."""
    return merkle.compute_proof(suite.hash, [compute_signed_tx_hash(suite, tx) for tx in block.txs], index)


def compute_receipt_merkle_proof(suite: Suite, receipts: Sequence[Receipt], index: int) -> merkle.MerkleProof:
    """Proof that ``receipts[index]`` is under the NEXT header's ``receipts_root`` (leaves are encoded receipts;
    execution is deferred, so a block's receipts are committed by its child)."""
    return merkle.compute_proof(suite.hash, [r.encode() for r in receipts], index)


def get_tx_proof_doc(suite: Suite, block: Block, commit: Commit, index: int, receipts: Sequence[Receipt],
                     child: Block | None, child_commit: Commit | None) -> dict[str, Any]:
    """The ``proof`` of ``GET /txs/{hash}``: inclusion of the transaction under its block's header and commit,
    and — once the child block exists — of its receipt under the child's header and commit."""
    doc: dict[str, Any] = {
        "tx": {"merkle": get_merkle_doc(compute_tx_merkle_proof(suite, block, index)),
               "header": get_header_doc(suite, block.header), "commit": get_commit_doc(commit)},
        "receipt": None,
    }
    if child is not None and child_commit is not None:
        doc["receipt"] = {"merkle": get_merkle_doc(compute_receipt_merkle_proof(suite, receipts, index)),
                          "header": get_header_doc(suite, child.header), "commit": get_commit_doc(child_commit)}
    return doc


def get_state_doc(suite: Suite, namespace: str, key: bytes, value: bytes | None, proof: StateProof,
                  block: Block, commit: Commit) -> dict[str, Any]:
    """The answer of ``GET /state/{namespace}/{key}``: the value (or its absence) with a state proof against the
    state root of ``block``'s header (the state after the block before it), the header and its commit."""
    return {
        "namespace": namespace,
        "key": key.hex(),
        "value": None if value is None else value.hex(),
        "value_text": _get_text(value),
        "state_height": block.header.height - 1,
        "proof": to_json_value(proof.to_wire()),
        "header": get_header_doc(suite, block.header),
        "commit": get_commit_doc(commit),
    }


def _get_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None
