"""Evidence certificates: everything needed to prove, offline, that a document's digest was registered.

A certificate holds the chain's genesis, the registering transaction with its Merkle proof, block header and commit
signatures, its receipt (whose result is the record) with the next header and commit, a state proof of the
record, and a state proof of the sender's membership. Checking it trusts only the genesis validator keys
(optionally pinned by ``--genesis``): no node is asked.

Everything :class:`CheckedEvidence` reports is derived from proven bytes, never from the certificate's readable
JSON nor from what the contract returned: the owner is the organisation of the key that signed the registering
transaction (proven by the ``sys:member`` state entry), the title and type are the signed transaction's
arguments, the time and height come from the signed header, and the signer count from the verified commit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from qilian.crypto import get_suite
from qilian.execution.policy import MEMBER_NAMESPACE
from qilian.sdk.verify import (
    ProofInvalid,
    verify_header,
    verify_state_response,
    verify_tx_response,
    verify_validator_path,
)
from qilian.types.codec import CodecError, decode_raw, encode_trusted, from_json_value, to_json_value
from qilian.types.core import STATUS_OK, Genesis
from qilian.types.genesis_json import genesis_from_json, genesis_to_json

CERT_VERSION: Final = 4
"""2 adds the membership proof of the registering key (version 1 certificates named an owner nobody proved); 3 adds
``validator_path``, the validator-set changes from genesis to the proofs' heights (absent while the set is
genesis's); 4 proves the membership **at the registering height** (against the registering block's own header:
the state its transactions ran against), so a key revoked or rotated since still shows the organisation it
registered for — versions 2 and 3 proved it at the tip, and stopped checking once the key left."""
ACCEPTED_VERSIONS: Final = (2, 3, 4)
EVIDENCE_CONTRACT: Final = "evidence"
"""Name of the evidence system contract."""


def compute_record_key(digest: bytes) -> bytes:
    """State key of a digest's record in the evidence contract's storage (``records[digest]``)."""
    return encode_trusted(["records", digest])


@dataclass(frozen=True)
class CheckedEvidence:
    """What a certificate proves; every field comes from verified bytes."""

    digest: bytes
    """The certified digest (the registering transaction's signed argument)."""
    record: dict[str, Any]
    """The record as the contract stored it (proven in state and in the receipt)."""
    height: int
    """Height of the registering block (signed header)."""
    tx_hash: bytes
    """Hash of the registering transaction (recomputed)."""
    chain_id: str
    """Chain of the signed header (and the genesis)."""
    genesis_hash: bytes
    """Hash of the genesis the proofs were checked against."""
    signers: int
    """Validators whose precommits on the registering block verified."""
    owner_org: str = ""
    """Organisation of the key that signed the registration (proven by its ``sys:member`` state entry)."""
    owner_member: str = ""
    """That key's member name."""
    owner_address: str = ""
    """That key's address (hex)."""
    title: str = ""
    """Title, as the sender signed it."""
    doc_type: str = ""
    """Document type, as the sender signed it."""
    time_ms: int = 0
    """Time of the registering block (signed header)."""


def compute_member_key(public_key: bytes) -> bytes:
    """State key of a member entry (namespace ``sys:member``)."""
    return public_key


def make_certificate(genesis: Genesis, tx_response: dict[str, Any], state_response: dict[str, Any],
                     digest: bytes, member_response: dict[str, Any],
                     validator_path: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble a certificate from a node's answers (checked here too, so a bad node cannot hand one out).
    ``member_response`` is the state proof of the registering key's ``sys:member`` entry at the registering height
    (``GET /state/sys:member/KEY?height=H``, H the registering block); ``validator_path``
    (``GET /gov/validators/path``) carries the validator-set changes from genesis to the proofs' heights."""
    cert = {
        "type": "qilian-evidence-certificate",
        "version": CERT_VERSION,
        "chain_id": genesis.chain_id,
        "digest": digest.hex(),
        "genesis": json.loads(genesis_to_json(genesis)),
        "tx": tx_response,
        "state": state_response,
        "member": member_response,
    }
    if validator_path is not None:
        cert["validator_path"] = validator_path
    check_certificate(cert)
    return cert


def check_certificate(cert: dict[str, Any], pinned_genesis: Genesis | None = None,
                      file_bytes: bytes | None = None) -> CheckedEvidence:
    """Verify a certificate offline; raises ProofInvalid naming what does not hold."""
    try:
        if cert.get("type") != "qilian-evidence-certificate" or cert.get("version") not in ACCEPTED_VERSIONS:
            raise ProofInvalid("not a Qilian evidence certificate of a known version")
        genesis = genesis_from_json(json.dumps(cert["genesis"]))
        suite = get_suite(genesis.suite)
        ghash = genesis.compute_hash(suite)
        if pinned_genesis is not None and pinned_genesis.compute_hash(get_suite(pinned_genesis.suite)) != ghash:
            raise ProofInvalid("the certificate is for another chain than the trusted genesis")
        digest = bytes.fromhex(cert["digest"])
        trusted = verify_validator_path(genesis, cert.get("validator_path"))
        v = verify_tx_response(genesis, cert["tx"], require_receipt=True, trusted=trusted)
        body = v.tx.body
        if body.to != EVIDENCE_CONTRACT or body.method != "register" or len(body.args) != 4 or \
                body.args[0] != digest or type(body.args[1]) is not str or type(body.args[2]) is not str:
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
        stored = verify_state_response(genesis, cert["state"], trusted)
        if stored is None or decode_raw(stored) != record:
            raise ProofInvalid("the state proof does not show this record")
        if file_bytes is not None and suite.hash(file_bytes) != digest:
            raise ProofInvalid(f"the file's {suite.name} digest is not the certified digest")
        member_doc = cert["member"]
        if member_doc.get("namespace") != MEMBER_NAMESPACE or bytes.fromhex(
                member_doc.get("key", "")) != compute_member_key(body.sender):
            raise ProofInvalid("the membership proof is not for the key that signed the registration")
        member_raw = verify_state_response(genesis, member_doc, trusted)
        if cert["version"] >= 4:
            member_header = verify_header(genesis, member_doc.get("header"), member_doc.get("commit"), trusted)
            if member_header.height != v.height:
                raise ProofInvalid(f"the membership proof is for height {member_header.height}, not the registering "
                                   f"height {v.height}")
        if member_raw is None:
            raise ProofInvalid("the key that signed the registration is not a member of the chain")
        member = decode_raw(member_raw)
        if type(member) is not list or len(member) != 3 or type(member[0]) is not str or type(member[1]) is not str:
            raise ProofInvalid("the membership entry is malformed")
        owner_org = member[0]
        if record.get("owner_org") != owner_org:
            raise ProofInvalid(f"the record names owner {record.get('owner_org')!r} but the registration was "
                               f"signed by a key of {owner_org!r}")
        address = suite.compute_address(body.sender).hex()
        if record.get("owner") != address:
            raise ProofInvalid("the record names another owner key than the one that signed the registration")
        return CheckedEvidence(digest, record, v.height, v.tx_hash, v.header.chain_id, ghash, v.signers, owner_org,
                               member[1], address, body.args[1], body.args[2], v.header.time_ms)
    except ProofInvalid:
        raise
    except (KeyError, TypeError, ValueError, CodecError) as exc:
        raise ProofInvalid(f"malformed certificate: {type(exc).__name__}: {exc}") from None


def record_json(record: dict[str, Any]) -> Any:
    """A record in the API's JSON form."""
    return to_json_value(record)


__all__ = ["CheckedEvidence", "check_certificate", "compute_member_key", "compute_record_key", "from_json_value",
           "make_certificate", "record_json"]
