"""Client side of IoT attestation: device-signed readings, gateway batches (a Merkle tree over the signed
readings, qilian.crypto.merkle), and the offline proof of one reading.

A reading is a canonical map ``{"device", "seq", "t", "values"}`` — ``t`` in ms since the epoch by the device's
clock, values integers or decimal strings; its ID is ``device:seq``. The device signs
``"QILIAN/IOT-READING/1\\0" ‖ encode(reading)`` with its own key (SM2 or Ed25519). The Merkle leaf is
``encode([reading, signature])``, hashed with the chain's suite hash, so the root commits to both.

A proof (``qilian-iot-reading-proof`` v1) holds the genesis, the reading and signature, its Merkle path, the
anchoring transaction with its proofs, the device's registration record (state proof) and the anchoring key's
membership (state proof). :func:`check_proof` refuses, naming the reason: a signature that does not verify, a
device registered by another organisation than the one that anchored the batch, a reading at or after the
device's retirement, a reading outside the batch's window, a device outside the batch's device set, or a path
that does not lead to the anchored root."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from qilian.apps.certs import get_genesis, get_member, is_malformed
from qilian.apps.iot.module import (
    IOT_MODULE,
    IOT_NAMESPACE,
    MAX_BATCH_READINGS,
    RETIRED,
    check_anchor_args,
    compute_device_key,
    get_device_id,
)
from qilian.crypto import get_suite, merkle
from qilian.execution.env import CallFailed
from qilian.sdk.verify import ProofInvalid, verify_state_response, verify_tx_response
from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import STATUS_OK, Genesis

DOMAIN_READING: Final = b"QILIAN/IOT-READING/1\x00"
"""Prefix of the bytes a device signs."""
PROOF_TYPE: Final = "qilian-iot-reading-proof"
PROOF_VERSION: Final = 1
MAX_VALUES: Final = 32
"""Most named values in one reading."""
_DECIMAL: Final = re.compile(r"-?\d{1,18}(\.\d{1,18})?")


class ReadingInvalid(ValueError):
    """A reading that is not well formed; the message names the field."""


def check_reading(value: Any) -> dict[str, Any]:
    """A well-formed reading, or ReadingInvalid naming what is wrong."""
    if type(value) is not dict or set(value) != {"device", "seq", "t", "values"}:
        raise ReadingInvalid('a reading is {"device", "seq", "t", "values"} and nothing else')
    try:
        get_device_id(value["device"])
    except CallFailed as exc:
        raise ReadingInvalid(str(exc)) from None
    for k in ("seq", "t"):
        if type(value[k]) is not int or not 0 <= value[k] < 2**63:
            raise ReadingInvalid(f"{k} must be a non-negative integer")
    values = value["values"]
    if type(values) is not dict or not 1 <= len(values) <= MAX_VALUES:
        raise ReadingInvalid(f"values must map 1..{MAX_VALUES} names to integers or decimal strings")
    for name, v in values.items():
        if type(name) is not str or not 1 <= len(name) <= 64:
            raise ReadingInvalid("value names are text of 1..64 characters")
        if not (type(v) is int or (type(v) is str and _DECIMAL.fullmatch(v))):
            raise ReadingInvalid(f"value {name} must be an integer or a decimal string like \"21.5\" (no floats)")
    return value


def get_reading_id(reading: dict[str, Any]) -> str:
    """``device:seq``."""
    return f"{reading['device']}:{reading['seq']}"


def compute_reading_sign_bytes(reading: dict[str, Any]) -> bytes:
    """What a device signs."""
    return DOMAIN_READING + encode_trusted(reading)


def sign_reading(suite_name: str, private_key: bytes, reading: dict[str, Any]) -> bytes:
    """A device's signature over a reading."""
    return get_suite(suite_name).sign(private_key, compute_reading_sign_bytes(check_reading(reading)))


def is_valid_reading_signature(suite_name: str, public_key: bytes, reading: dict[str, Any], signature: bytes) -> bool:
    """Whether ``signature`` is the device key's over ``reading``."""
    return get_suite(suite_name).verify(public_key, compute_reading_sign_bytes(reading), signature)


def compute_leaf(reading: dict[str, Any], signature: bytes) -> bytes:
    """The Merkle leaf of a signed reading."""
    return encode_trusted([reading, signature])


def compute_leaf_from_encoded(encoded_reading: bytes, signature: bytes) -> bytes:
    """The same bytes as :func:`compute_leaf`, from the reading's encoding the signature check already made.

    A two-element array is the one-byte header 0x92 followed by its elements' encodings, so the gateway, which
    encodes each reading once to check its signature, does not encode it a second time for the leaf."""
    return b"\x92" + encoded_reading + encode_trusted(signature)


@dataclass(frozen=True)
class Batch:
    """A gateway's batch, ready to anchor."""

    leaves: list[bytes]
    """Merkle leaves in order."""
    root: bytes
    """Merkle root (chain suite hash)."""
    devices: list[str]
    """Sorted distinct device ids."""
    from_ms: int
    """Earliest reading time."""
    to_ms: int
    """Latest reading time."""

    def to_anchor_args(self, meta: str = "") -> list[Any]:
        """Arguments of ``iot.anchor``."""
        return [self.root, len(self.leaves), self.devices, self.from_ms, self.to_ms, meta]


def make_batch(hash_fn: Callable[[bytes], bytes], signed: Sequence[tuple[dict[str, Any], bytes]]) -> Batch:
    """A batch over signed readings, in the given order. Checks form and size, not signatures (the gateway
    verifies those against the registered keys before anchoring)."""
    if not signed:
        raise ReadingInvalid("a batch needs at least one reading")
    if len(signed) > MAX_BATCH_READINGS:
        raise ReadingInvalid(f"a batch holds at most {MAX_BATCH_READINGS} readings, got {len(signed)}")
    seen: set[str] = set()
    for r, _ in signed:
        check_reading(r)
        rid = get_reading_id(r)
        if rid in seen:
            raise ReadingInvalid(f"reading {rid} appears twice in the batch")
        seen.add(rid)
    leaves = [compute_leaf(r, s) for r, s in signed]
    times = [r["t"] for r, _ in signed]
    return Batch(leaves, merkle.compute_root(hash_fn, leaves), sorted({r["device"] for r, _ in signed}),
                 min(times), max(times))


def make_proof(genesis_doc: Any, reading: dict[str, Any], signature: bytes, path: merkle.MerkleProof,
               anchor_doc: dict[str, Any], device_doc: dict[str, Any], member_doc: dict[str, Any]) -> dict[str, Any]:
    """Assemble a reading proof from the node's documents."""
    return {"type": PROOF_TYPE, "version": PROOF_VERSION, "reading_id": get_reading_id(reading),
            "genesis": genesis_doc, "reading": reading, "signature": signature.hex(),
            "merkle": {"index": path.index, "size": path.size, "path": [h.hex() for h in path.path]},
            "anchor": anchor_doc, "device": device_doc, "member": member_doc}


@dataclass(frozen=True)
class CheckedReading:
    """What a reading proof proves; every field comes from verified bytes."""

    reading: dict[str, Any]
    """The reading, as the device signed it."""
    device_org: str
    """Organisation that registered the device."""
    anchored_by: str
    """Organisation whose gateway anchored the batch (proven signer)."""
    height: int
    """Height of the anchoring block."""
    time_ms: int
    """Time of the anchoring block."""
    tx_hash: bytes
    """Anchoring transaction."""
    root: bytes
    """Anchored Merkle root."""
    count: int
    """Readings in the batch."""
    chain_id: str
    """The chain."""
    genesis_hash: bytes
    """Genesis the proof was checked against."""


def check_proof(doc: dict[str, Any], pinned: Genesis | None = None) -> CheckedReading:
    """Verify a reading proof offline; raises ProofInvalid naming the reason."""
    try:
        if doc.get("type") != PROOF_TYPE or doc.get("version") != PROOF_VERSION:
            raise ProofInvalid("not a Qilian IoT reading proof of a known version")
        genesis, suite, ghash = get_genesis(doc, pinned)
        try:
            reading = check_reading(doc["reading"])
        except ReadingInvalid as exc:
            raise ProofInvalid(f"malformed reading: {exc}") from None
        signature = bytes.fromhex(doc["signature"])
        device_id = reading["device"]
        v = verify_tx_response(genesis, doc["anchor"], require_receipt=True)
        body = v.tx.body
        if body.to != IOT_MODULE or body.method != "anchor" or len(body.args) != 6:
            raise ProofInvalid("the anchoring transaction is not an iot.anchor")
        if v.receipt is None or v.receipt.status != STATUS_OK:
            raise ProofInvalid("the anchoring transaction did not succeed")
        try:
            root, count, devices, from_ms, to_ms, _ = check_anchor_args(tuple(body.args))
        except CallFailed as exc:
            raise ProofInvalid(f"the anchoring transaction is malformed: {exc}") from None
        path = merkle.MerkleProof.from_wire([doc["merkle"]["index"], doc["merkle"]["size"],
                                             [bytes.fromhex(h) for h in doc["merkle"]["path"]]])
        if path.size != count:
            raise ProofInvalid(f"the Merkle path is for a batch of {path.size} readings; {count} were anchored")
        if not merkle.is_valid_proof(suite.hash, root, compute_leaf(reading, signature), path):
            raise ProofInvalid("the reading (with its signature) is not in the anchored batch: the Merkle path does "
                               "not lead to the anchored root")
        dev_doc = doc["device"]
        if dev_doc.get("namespace") != IOT_NAMESPACE or dev_doc.get("key") != compute_device_key(device_id).hex():
            raise ProofInvalid(f"the device proof is not for device {device_id}")
        raw = verify_state_response(genesis, dev_doc)
        if raw is None:
            raise ProofInvalid(f"device {device_id} is proven not to be registered")
        device = decode_raw(raw)
        if not is_valid_reading_signature(device["suite"], device["public_key"], reading, signature):
            raise ProofInvalid(f"the signature is not by device {device_id}'s registered key (forged or altered "
                               f"reading)")
        if doc["member"].get("key") != body.sender.hex():
            raise ProofInvalid("the membership proof is not for the key that anchored the batch")
        anchored_by, _ = get_member(genesis, {body.sender.hex(): doc["member"]}, body.sender, v.height)
        if device["org"] != anchored_by:
            raise ProofInvalid(f"key of another organisation: device {device_id} is registered by {device['org']}, "
                               f"but the batch was anchored by {anchored_by}")
        if device["status"] == RETIRED and reading["t"] >= device["retired_ms"]:
            raise ProofInvalid(f"device {device_id} was retired at height {device['retired']} "
                               f"({device['retired_ms']} ms); the reading is from {reading['t']} ms")
        if not from_ms <= reading["t"] <= to_ms:
            raise ProofInvalid(f"reading time {reading['t']} ms is outside the batch window "
                               f"[{from_ms}, {to_ms}] ms")
        if device_id not in devices:
            raise ProofInvalid(f"device {device_id} is not in the batch's device set")
        return CheckedReading(reading, device["org"], anchored_by, v.height, v.header.time_ms, v.tx_hash, root,
                              count, genesis.chain_id, ghash)
    except ProofInvalid:
        raise
    except Exception as exc:
        if is_malformed(exc) or isinstance(exc, ReadingInvalid):
            raise ProofInvalid(f"malformed proof: {type(exc).__name__}: {exc}") from None
        raise


__all__ = ["DOMAIN_READING", "Batch", "CheckedReading", "ReadingInvalid", "check_proof", "check_reading",
           "compute_leaf", "compute_leaf_from_encoded", "compute_reading_sign_bytes", "get_reading_id",
           "is_valid_reading_signature", "make_batch", "make_proof", "sign_reading"]
