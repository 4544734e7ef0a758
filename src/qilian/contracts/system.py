"""System contracts: written in the contract language, installed at genesis under fixed names."""

from __future__ import annotations

from typing import Final

EVIDENCE_SOURCE: Final = '''"""Evidence storage (存证): a document's digest with metadata; records are append-only."""

records = Hash()
count = Variable(default=0)


@export
def register(digest: bytes, title: str, doc_type: str, uri: str):
    """Record a digest (32 bytes, hashed by the client with the chain's suite). A digest is registered once:
    a second registration fails and names the first."""
    assert isinstance(digest, bytes) and len(digest) == 32, "digest must be 32 bytes"
    assert isinstance(title, str) and 0 < len(title) <= 256, "title must be 1..256 characters"
    assert isinstance(doc_type, str) and len(doc_type) <= 64, "doc_type must be at most 64 characters"
    assert isinstance(uri, str) and len(uri) <= 1024, "uri must be at most 1024 characters"
    first = records[digest]
    assert first is None, f"already registered by {first['tx_hash']} at height {first['height']}"
    record = {
        "digest": digest,
        "title": title,
        "type": doc_type,
        "uri": uri,
        "owner_org": ctx.org,
        "owner": ctx.sender,
        "height": ctx.height,
        "time_ms": ctx.time_ms,
        "tx_hash": ctx.tx_hash,
    }
    records[digest] = record
    count.set(count.get() + 1)
    emit("Registered", {"digest": digest, "title": title, "owner_org": ctx.org})
    return record


@export
def get(digest: bytes):
    """The record of a digest, or None."""
    return records[digest]


@export
def total():
    """How many digests are registered."""
    return count.get()
'''
"""The evidence contract (see docs/contracts.md)."""

SYSTEM_CONTRACTS: Final = {"evidence": EVIDENCE_SOURCE}
"""Name → source of the contracts every chain has from genesis."""
