"""Offline checking shared by the apps' certificates, trusting only the chain's genesis validator keys (like the
evidence certificate, :mod:`qilian.sdk.certificate`).

A record-with-history bundle is checked in three steps: the record's state proof leads to a signed header's state
root; each transaction of its history is proven in its block with a committed, successful receipt; and the hash
chain recomputed over those transactions' entries equals the proven record's ``head`` after ``n`` entries — so
the history shown is complete and in order. Who did each step is the organisation of the key that signed its
transaction, proven by that key's ``sys:member`` state entry, never a JSON field."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qilian.apps.base import ZERO_HEAD, compute_chain_head
from qilian.crypto import get_suite
from qilian.crypto.suite import Suite
from qilian.execution.policy import MEMBER_NAMESPACE
from qilian.sdk.verify import ProofInvalid, VerifiedTx, verify_state_response, verify_tx_response
from qilian.types.codec import CodecError, decode_raw
from qilian.types.core import STATUS_OK, Genesis
from qilian.types.genesis_json import genesis_from_json


@dataclass(frozen=True)
class ProvenStep:
    """One entry of a record's history, as proven."""

    tx: VerifiedTx
    """The transaction, proven in its block, with its receipt."""
    org: str
    """Organisation of the key that signed it (proven membership)."""
    member: str
    """That key's member name."""
    entry_hash: bytes
    """The entry it added to the record's hash chain."""


def get_genesis(cert: dict[str, Any], pinned: Genesis | None) -> tuple[Genesis, Suite, bytes]:
    """The certificate's genesis (which must be the pinned one, when given), its suite and hash."""
    genesis = genesis_from_json(json.dumps(cert["genesis"]))
    suite = get_suite(genesis.suite)
    ghash = genesis.compute_hash(suite)
    if pinned is not None and pinned.compute_hash(get_suite(pinned.suite)) != ghash:
        raise ProofInvalid("the certificate is for another chain than the trusted genesis")
    return genesis, suite, ghash


def get_member(genesis: Genesis, members: dict[str, Any], public_key: bytes, height: int) -> tuple[str, str]:
    """(organisation, member name) of a key when it signed a transaction of block ``height``: its ``sys:member``
    entry proven against the header of that height (``members["KEY@HEIGHT"]``). A certificate made before
    membership was proven per height carries ``members["KEY"]`` proven at its tip, accepted as such (it then
    says who holds the key at the certificate's tip, a true but later statement)."""
    doc = members.get(f"{public_key.hex()}@{height}")
    at_height = doc is not None
    if doc is None:
        doc = members.get(public_key.hex())
    if doc is None:
        raise ProofInvalid(f"no membership proof for key {public_key.hex()[:16]}… at height {height}")
    if not isinstance(doc, dict) or doc.get("namespace") != MEMBER_NAMESPACE or doc.get("key") != public_key.hex():
        raise ProofInvalid("a membership proof is not for the key it is filed under")
    if at_height and (not isinstance(doc.get("header"), dict) or doc["header"].get("height") != height):
        raise ProofInvalid(f"the membership proof filed for height {height} is for another height")
    raw = verify_state_response(genesis, doc)
    if raw is None:
        raise ProofInvalid(f"key {public_key.hex()[:16]}… is proven not to be a member of the chain")
    member = decode_raw(raw)
    if type(member) is not list or len(member) != 3 or type(member[0]) is not str or type(member[1]) is not str:
        raise ProofInvalid("a membership entry is malformed")
    return member[0], member[1]


def check_bundle(genesis: Genesis, suite: Suite, bundle: dict[str, Any], namespace: str, key: bytes,
                 txs: dict[str, Any], members: dict[str, Any],
                 get_entry: Callable[[VerifiedTx], bytes]) -> tuple[dict[str, Any], list[ProvenStep]]:
    """Check one record with its history; returns the proven record and its steps in order.

    ``get_entry`` recomputes a transaction's chain entry from its signed arguments (raising ProofInvalid when the
    transaction is not one that can touch this record)."""
    state = bundle["state"]
    if state.get("namespace") != namespace or state.get("key") != key.hex():
        raise ProofInvalid("a state proof is not for the record it is filed under")
    raw = verify_state_response(genesis, state)
    if raw is None:
        raise ProofInvalid("the record is proven absent from the chain")
    record = decode_raw(raw)
    if type(record) is not dict or type(record.get("n")) is not int or type(record.get("head")) is not bytes:
        raise ProofInvalid("the proven record is malformed")
    hashes = bundle["events"]
    if type(hashes) is not list or len(hashes) != record["n"]:
        raise ProofInvalid(f"the record has {record['n']} history entries; the certificate carries "
                           f"{len(hashes) if type(hashes) is list else 'no list of'} transaction(s)")
    head = ZERO_HEAD
    steps = []
    last_height = 0
    for h in hashes:
        doc = txs.get(h)
        if doc is None:
            raise ProofInvalid(f"transaction {str(h)[:16]}… of the history is missing")
        v = verify_tx_response(genesis, doc, require_receipt=True)
        if v.receipt is None or v.receipt.status != STATUS_OK:
            raise ProofInvalid(f"transaction {v.tx_hash.hex()[:16]}… did not succeed")
        if v.height < last_height:
            raise ProofInvalid("the history is out of order")
        last_height = v.height
        entry = get_entry(v)
        head = compute_chain_head(suite.hash, head, entry, v.tx_hash)
        org, member = get_member(genesis, members, v.tx.body.sender, v.height)
        steps.append(ProvenStep(v, org, member, entry))
    if head != record["head"]:
        raise ProofInvalid("the history does not match the proven record (an entry is missing, extra, altered or "
                           "out of order)")
    return record, steps


def is_malformed(exc: Exception) -> bool:
    """Whether an exception raised while reading a certificate means it is malformed (not a bug)."""
    return isinstance(exc, KeyError | TypeError | ValueError | CodecError | AttributeError | IndexError)


__all__ = ["ProvenStep", "check_bundle", "get_genesis", "get_member", "is_malformed"]
