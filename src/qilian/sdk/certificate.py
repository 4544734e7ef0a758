"""Evidence certificates: everything needed to prove, offline, that a document's digest was registered.

A certificate holds the chain's genesis, the registering transaction with its Merkle proof, block header and commit
signatures, its receipt (whose result is the record) with the next header and commit, and a state proof of the
record. Checking it trusts only the genesis validator keys (optionally pinned by ``--genesis``): no node is asked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from qilian.crypto import get_suite
from qilian.sdk.verify import ProofInvalid, verify_state_response, verify_tx_response
from qilian.types.codec import CodecError, decode_raw, encode_trusted, from_json_value, to_json_value
from qilian.types.core import STATUS_OK, Genesis
from qilian.types.genesis_json import genesis_from_json, genesis_to_json

CERT_VERSION: Final = 1
EVIDENCE_CONTRACT: Final = "evidence"
"""Name of the evidence system contract."""


def compute_record_key(digest: bytes) -> bytes:
    """State key of a digest's record in the evidence contract's storage (``records[digest]``)."""
    return encode_trusted(["records", digest])


@dataclass(frozen=True)
class CheckedEvidence:
    """What a certificate proves."""

    digest: bytes
    record: dict[str, Any]
    height: int
    tx_hash: bytes
    chain_id: str
    genesis_hash: bytes
    signers: int


def make_certificate(genesis: Genesis, tx_response: dict[str, Any], state_response: dict[str, Any],
                     digest: bytes) -> dict[str, Any]:
    """Assemble a certificate from a node's answers (checked here too, so a bad node cannot hand one out)."""
    cert = {
        "type": "qilian-evidence-certificate",
        "version": CERT_VERSION,
        "chain_id": genesis.chain_id,
        "digest": digest.hex(),
        "genesis": json.loads(genesis_to_json(genesis)),
        "tx": tx_response,
        "state": state_response,
    }
    check_certificate(cert)
    return cert


def check_certificate(cert: dict[str, Any], pinned_genesis: Genesis | None = None,
                      file_bytes: bytes | None = None) -> CheckedEvidence:
    """Verify a certificate offline; raises ProofInvalid naming what does not hold."""
    try:
        if cert.get("type") != "qilian-evidence-certificate" or cert.get("version") != CERT_VERSION:
            raise ProofInvalid("not a Qilian evidence certificate of a known version")
        genesis = genesis_from_json(json.dumps(cert["genesis"]))
        suite = get_suite(genesis.suite)
        ghash = genesis.compute_hash(suite)
        if pinned_genesis is not None and pinned_genesis.compute_hash(get_suite(pinned_genesis.suite)) != ghash:
            raise ProofInvalid("the certificate is for another chain than the trusted genesis")
        digest = bytes.fromhex(cert["digest"])
        v = verify_tx_response(genesis, cert["tx"], require_receipt=True)
        body = v.tx.body
        if body.to != EVIDENCE_CONTRACT or body.method != "register" or not body.args or body.args[0] != digest:
            raise ProofInvalid("the transaction is not a registration of this digest")
        receipt = v.receipt
        if receipt is None or receipt.status != STATUS_OK or not isinstance(receipt.result, dict):
            raise ProofInvalid("the registration did not succeed")
        record = receipt.result
        if record.get("digest") != digest or record.get("height") != v.height:
            raise ProofInvalid("the receipt's record does not match the digest and block")
        if cert["state"].get("namespace") != f"c:{EVIDENCE_CONTRACT}" or bytes.fromhex(
                cert["state"].get("key", "")) != compute_record_key(digest):
            raise ProofInvalid("the state proof is not for this digest's record")
        stored = verify_state_response(genesis, cert["state"])
        if stored is None or decode_raw(stored) != record:
            raise ProofInvalid("the state proof does not show this record")
        if file_bytes is not None and suite.hash(file_bytes) != digest:
            raise ProofInvalid(f"the file's {suite.name} digest is not the certified digest")
        signers = len(cert["tx"]["proof"]["tx"]["commit"]["signatures"])
        return CheckedEvidence(digest, record, v.height, v.tx_hash, genesis.chain_id, ghash, signers)
    except ProofInvalid:
        raise
    except (KeyError, TypeError, ValueError, CodecError) as exc:
        raise ProofInvalid(f"malformed certificate: {type(exc).__name__}: {exc}") from None


def record_json(record: dict[str, Any]) -> Any:
    """A record in the API's JSON form."""
    return to_json_value(record)


__all__ = ["CheckedEvidence", "check_certificate", "compute_record_key", "from_json_value", "make_certificate",
           "record_json"]
