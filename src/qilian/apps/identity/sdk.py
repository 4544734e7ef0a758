"""SDK helpers for did:qilian: build signed operations, and resolve DIDs and status bits from state proofs that a
verifier checks against genesis alone (the node is only a courier: nothing in its readable JSON is trusted)."""

from __future__ import annotations

from typing import Any

from qilian.apps.identity.module import (
    DID_NAMESPACE,
    STATUS_CHUNK_BYTES,
    DidRecord,
    compute_did,
    compute_did_key,
    compute_op_signature,
    compute_status_key,
    get_status_bit,
)
from qilian.sdk.keys import KeyPair
from qilian.sdk.verify import ProofInvalid, verify_state_response
from qilian.types.codec import decode_raw
from qilian.types.core import Genesis


def get_key_type(key: KeyPair) -> str:
    """The DID key type of a key pair (SM2 or Ed25519)."""
    return "SM2" if key.suite.name == "sm2" else "Ed25519"


def compute_new_document(keys: list[tuple[str, KeyPair | tuple[str, bytes]]], controllers: list[str]
                         ) -> dict[str, Any]:
    """A document whose every key authenticates, asserts and controls (the common case)."""
    out = []
    for frag, k in keys:
        out.append([frag, get_key_type(k), k.public_key] if isinstance(k, KeyPair) else [frag, k[0], k[1]])
    frags = [f for f, _ in keys]
    return {"keys": out, "controllers": controllers, "authentication": frags, "assertionMethod": frags,
            "capabilityInvocation": frags}


def compute_create_args(key: KeyPair, chain_id: str, controllers: list[str]) -> tuple[str, list[Any]]:
    """(DID, args of did.create) for a DID whose first key is ``key`` (fragment key-1)."""
    doc = compute_new_document([("key-1", key)], controllers)
    did = compute_did(get_key_type(key), key.public_key)
    return did, [doc, compute_op_signature(key.suite, key.private_key, chain_id, did, "create", doc, 0)]


def compute_op_args(key: KeyPair, signer: str, chain_id: str, record: DidRecord, op: str, payload: Any,
                    *middle: Any) -> list[Any]:
    """Args of did.update / deactivate / set_status signed by ``key`` (DID URL ``signer``) at the record's seq."""
    sig = compute_op_signature(key.suite, key.private_key, chain_id, record.did, op, payload, record.seq)
    return [record.did, *middle, signer, sig]


def get_fragment(record: DidRecord, key: KeyPair, relationship: str) -> str:
    """The fragment under which ``key`` serves ``relationship`` in the record; ValueError if it does not."""
    for frag, _t, pk in record.keys:
        if pk == key.public_key and frag in record.relationships.get(relationship, ()):
            return frag
    raise ValueError(f"the key is not a {relationship} key of {record.did}")


def _proven(genesis: Genesis, resp: dict[str, Any], namespace: str, key: bytes) -> bytes | None:
    if resp.get("namespace") != namespace or resp.get("key") != key.hex():
        raise ProofInvalid("the node proved another state entry than the one asked for")
    return verify_state_response(genesis, resp)


def verify_did_response(genesis: Genesis, did: str, resp: dict[str, Any]) -> DidRecord | None:
    """The DID record proven by a ``GET /state/app:did/…`` response (None: proven absent)."""
    raw = _proven(genesis, resp, DID_NAMESPACE, compute_did_key(did))
    if raw is None:
        return None
    record = DidRecord.from_value(decode_raw(raw))
    if record.did != did:
        raise ProofInvalid("the proven record is of another DID")
    return record


def verify_status_response(genesis: Genesis, did: str, list_name: str, index: int, resp: dict[str, Any]) -> int:
    """The status bit proven by a ``GET /state/app:did/…`` response for the chunk holding ``index``."""
    raw = _proven(genesis, resp, DID_NAMESPACE, compute_status_key(did, list_name, index // (STATUS_CHUNK_BYTES * 8)))
    return get_status_bit(raw, index)


def compute_status_chunk_key(did: str, list_name: str, index: int) -> bytes:
    """State key of the chunk holding entry ``index``."""
    return compute_status_key(did, list_name, index // (STATUS_CHUNK_BYTES * 8))
