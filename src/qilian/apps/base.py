"""What the scenario apps share: records kept as canonical maps, a hash chain over each record's history, and
bounded checks of user-supplied text. Pure code (no IO, no time, no randomness, no floats).

The hash chain is what lets an offline certificate prove a record's *whole* history with a single state proof:
the record stores ``n`` (entries so far) and ``head``; every entry moves the head to
``H(DOMAIN_CHAIN ‖ head ‖ entry_hash ‖ tx_hash)``. A verifier that holds the transactions of all ``n`` entries
(each proven in its block) recomputes the head and compares it with the proven record: an omitted, reordered or
foreign entry changes the head."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from qilian.execution.env import CallFailed, Overlay
from qilian.execution.messages import quote
from qilian.types.codec import CodecError, decode_raw, encode_trusted

DOMAIN_CHAIN: Final = b"QILIAN/APP-CHAIN/1\x00"
"""Prefix of every hash-chain step, so a chain head can never pass for another kind of hash."""
ZERO_HEAD: Final = bytes(32)
"""Head of a record with no entries yet."""
MAX_TEXT: Final = 256
"""Longest identifier or short text field (characters) in any app record."""
MAX_FREE_TEXT: Final = 4096
"""Longest free text (a reason, licence text, claims) in any app record."""

StateGet = Callable[[str, bytes], bytes | None]
"""Read access to state: ``get(namespace, key)``; execution passes its overlay, the API its store."""

_ID_RE: Final = re.compile(r"[a-z][a-z0-9+.\-]*:[!-~]+")
"""An identifier is a URI: a scheme, a colon, then printable ASCII without spaces."""


def compute_chain_head(hash_fn: Callable[[bytes], bytes], head: bytes, entry_hash: bytes, tx_hash: bytes) -> bytes:
    """The next head of a record's hash chain after one entry recorded by transaction ``tx_hash``."""
    return hash_fn(DOMAIN_CHAIN + head + entry_hash + tx_hash)


def get_record(get: StateGet, namespace: str, key: bytes) -> dict[str, Any] | None:
    """A record stored as a canonical map, or None when absent."""
    raw = get(namespace, key)
    if raw is None:
        return None
    try:
        value = decode_raw(raw)
    except CodecError:  # pragma: no cover - only this code writes the namespace
        return None
    return value if type(value) is dict else None


def process_put_record(state: Overlay, namespace: str, key: bytes, record: dict[str, Any]) -> None:
    """Store a record as its canonical bytes."""
    state.put(namespace, key, encode_trusted(record))


def get_text(value: Any, what: str, max_len: int = MAX_TEXT, empty: bool = False) -> str:
    """``value`` as bounded text, or CallFailed naming the field."""
    if type(value) is not str:
        raise CallFailed(f"{what} must be text, got {type(value).__name__}")
    if not value and not empty:
        raise CallFailed(f"{what} must not be empty")
    if len(value) > max_len:
        raise CallFailed(f"{what} is {len(value)} characters, over the limit of {max_len}")
    return value


def get_identifier(value: Any, what: str) -> str:
    """A URI identifier (``urn:epc:id:sgtin:…``, ``urn:org1:box:7``, ``https://…``), or CallFailed."""
    text = get_text(value, what)
    if not _ID_RE.fullmatch(text):
        raise CallFailed(f"{what} {quote(text)} is not an identifier URI (scheme:rest, printable ASCII, no spaces)")
    return text


def get_int(value: Any, what: str, low: int, high: int) -> int:
    """An integer within [low, high], or CallFailed."""
    if type(value) is not int:
        raise CallFailed(f"{what} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise CallFailed(f"{what} {value} is outside {low}..{high}")
    return value


def compute_index_key(prefix: bytes, index: int, name: str = "") -> bytes:
    """Key of the ``index``-th entry of an append-only list: prefix ‖ index (4 bytes big-endian) ‖ name."""
    return prefix + index.to_bytes(4, "big") + name.encode()


__all__ = ["DOMAIN_CHAIN", "MAX_FREE_TEXT", "MAX_TEXT", "ZERO_HEAD", "StateGet", "compute_chain_head",
           "compute_index_key", "get_identifier", "get_int", "get_record", "get_text", "process_put_record"]
