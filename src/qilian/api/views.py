"""JSON views of chain data for the HTTP API.

Each view carries both a readable form and, where a client must verify something, the canonical bytes in hex:
a client never has to re-encode JSON to check a hash or a signature.
"""

from __future__ import annotations

from typing import Any

from qilian.crypto.suite import Suite
from qilian.types.codec import to_json_value
from qilian.types.core import Block, BlockHeader, Commit, Event, Receipt, Transaction, compute_block_id

STATUS_NAMES = {0: "ok", 1: "failed", 2: "out_of_fuel"}


def header_view(suite: Suite, header: BlockHeader) -> dict[str, Any]:
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
        "proposer": header.proposer.hex(),
        "encoded": header.encode().hex(),
    }


def commit_view(commit: Commit) -> dict[str, Any]:
    return {
        "height": commit.height,
        "round": commit.round,
        "block_id": commit.block_id.hex(),
        "signatures": [{"validator": s.validator.hex(), "signature": s.signature.hex()} for s in commit.signatures],
        "encoded": commit.encode().hex(),
    }


def tx_view(suite: Suite, tx: Transaction, tx_hash: bytes) -> dict[str, Any]:
    b = tx.body
    return {
        "hash": tx_hash.hex(),
        "chain_id": b.chain_id,
        "sender": b.sender.hex(),
        "sender_address": suite.compute_address(b.sender).hex(),
        "nonce": b.nonce,
        "expires_at": b.expires_at,
        "to": b.to,
        "method": b.method,
        "args": to_json_value(list(b.args)),
        "signature": tx.signature.hex(),
        "encoded": tx.encode().hex(),
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


def block_view(suite: Suite, block: Block, tx_hashes: list[bytes], commit: Commit | None) -> dict[str, Any]:
    return {
        "header": header_view(suite, block.header),
        "txs": [tx_view(suite, tx, h) for tx, h in zip(block.txs, tx_hashes, strict=True)],
        "last_commit": None if block.last_commit is None else commit_view(block.last_commit),
        "commit": None if commit is None else commit_view(commit),
    }
