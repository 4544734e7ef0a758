"""JSON views of chain data for the HTTP API.

Each view carries both a readable form and, where a client must verify something, the canonical bytes in hex:
a client never has to re-encode JSON to check a hash or a signature.
"""

from __future__ import annotations

from typing import Any

from qilian.crypto.suite import Suite
from qilian.sdk.proofs import get_commit_doc, get_header_doc
from qilian.types.codec import decode_raw, to_json_value
from qilian.types.core import PREVOTE, Block, Commit, Event, Evidence, Receipt, Transaction, compute_evidence_hash

STATUS_NAMES = {0: "ok", 1: "failed", 2: "out_of_fuel"}


header_view = get_header_doc
"""A header as JSON (the builder is shared with the SDK: qilian.sdk.proofs)."""
commit_view = get_commit_doc
"""A commit as JSON (shared with the SDK)."""


def tx_view(suite: Suite, tx: Transaction, tx_hash: bytes) -> dict[str, Any]:
    """A transaction: ``hash`` is its ID (the body's hash), ``signed_hash`` the hash of ``encoded`` — the leaf of
    its block's ``txs_root``, naming the exact signature the chain agreed on."""
    b = tx.body
    encoded = tx.encode()
    return {
        "hash": tx_hash.hex(),
        "signed_hash": suite.hash(encoded).hex(),
        "chain_id": b.chain_id,
        "sender": b.sender.hex(),
        "sender_address": suite.compute_address(b.sender).hex(),
        "nonce": b.nonce,
        "expires_at": b.expires_at,
        "to": b.to,
        "method": b.method,
        "args": to_json_value(list(b.args)),
        "signature": tx.signature.hex(),
        "encoded": encoded.hex(),
    }


def event_view(ev: Event) -> dict[str, Any]:
    return {"source": ev.source, "name": ev.name, "data": to_json_value(ev.data)}


def receipt_view(r: Receipt) -> dict[str, Any]:
    return {
        "tx_hash": r.tx_hash.hex(),
        "status": STATUS_NAMES.get(r.status, str(r.status)),
        "error": r.error,
        "fuel_used": r.fuel_used,
        "result": to_json_value(r.result),
        "events": [event_view(e) for e in r.events],
        "encoded": r.encode().hex(),
    }


def evidence_view(suite: Suite, ev: Evidence) -> dict[str, Any]:
    """An equivocation proof: who, where, the two block IDs voted for (empty: nil) and the signed bytes."""
    a, b = ev.vote_a, ev.vote_b
    return {
        "hash": compute_evidence_hash(suite, ev).hex(),
        "validator": a.validator.hex(),
        "height": a.height,
        "round": a.round,
        "kind": "prevote" if a.kind == PREVOTE else "precommit",
        "block_ids": [a.block_id.hex(), b.block_id.hex()],
        "encoded": ev.encode().hex(),
    }


def evidence_record_view(evidence_hash: bytes, record: bytes) -> dict[str, Any]:
    """A committed evidence record (state ``sys:evidence``; qilian.execution.evidence.compute_evidence_record)."""
    at, validator, height, round_, kind, bid_a, bid_b = decode_raw(record)
    return {"hash": evidence_hash.hex(), "committed_at": at, "validator": validator.hex(), "height": height,
            "round": round_, "kind": "prevote" if kind == PREVOTE else "precommit",
            "block_ids": [bid_a.hex(), bid_b.hex()]}


def block_view(suite: Suite, block: Block, tx_hashes: list[bytes], commit: Commit | None) -> dict[str, Any]:
    return {
        "header": header_view(suite, block.header),
        "txs": [tx_view(suite, tx, h) for tx, h in zip(block.txs, tx_hashes, strict=True)],
        "evidence": [evidence_view(suite, ev) for ev in block.evidence],
        "last_commit": None if block.last_commit is None else commit_view(block.last_commit),
        "commit": None if commit is None else commit_view(commit),
    }
