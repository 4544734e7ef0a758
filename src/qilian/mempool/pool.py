"""The mempool: admitted, signature-checked transactions waiting for a block.

Pure bookkeeping: the node verifies a transaction's signature once before :meth:`Mempool.add` and never again
while it waits; the pool dedups by hash, keeps arrival order (first come, first served — no fee market on a
consortium chain), and refuses new work with a clear "full" answer when it hits its bounds instead of growing.

One body, one entry: a body can arrive with several valid signatures (a client re-signs on retry), and the pool
keeps the version it saw first. Proposals name the signed version they carry (its signed hash), so the pool also
answers by signed hash; a node whose version differs fetches the proposer's from its peers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from qilian.types.core import Transaction

DEFAULT_MAX_TXS: Final = 50_000
"""Most transactions waiting at once."""
DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
"""Most encoded bytes waiting at once."""


class MempoolFull(Exception):
    """No room: the client should retry later (HTTP 429)."""


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """A waiting transaction with what was computed about it on admission."""

    tx: Transaction
    """The transaction."""
    tx_hash: bytes
    """Its hash (the body's: the transaction's ID)."""
    signed_hash: bytes
    """The hash of its full signed bytes (what ``txs_root`` and proposals name)."""
    size: int
    """Its encoded size."""


class Mempool:
    """Bounded, ordered, deduplicated set of admitted transactions."""

    def __init__(self, max_txs: int = DEFAULT_MAX_TXS, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self._entries: dict[bytes, PoolEntry] = {}
        self._by_signed: dict[bytes, bytes] = {}
        """Signed hash → body hash of the version held."""
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        """Encoded bytes waiting."""
        return self._bytes

    def get_room(self) -> int:
        """How many more transactions the count bound admits (the byte bound is checked per transaction)."""
        return max(0, self.max_txs - len(self._entries))

    def is_known(self, tx_hash: bytes) -> bool:
        """True iff the transaction is waiting here."""
        return tx_hash in self._entries

    def get(self, tx_hash: bytes) -> PoolEntry | None:
        """The waiting entry with this hash, if any (block assembly looks up proposals' transactions here)."""
        return self._entries.get(tx_hash)

    def get_signed(self, signed_hash: bytes) -> PoolEntry | None:
        """The waiting entry whose signed bytes hash to ``signed_hash``; None if absent or if the pool holds the
        same body under another signature (block assembly must then fetch the named version)."""
        th = self._by_signed.get(signed_hash)
        return None if th is None else self._entries.get(th)

    def process_add(self, entry: PoolEntry) -> bool:
        """Admit an entry whose rules and signature were already checked. False if its body is already present
        (in this or another signed version: the first seen stays)."""
        if entry.tx_hash in self._entries:
            return False
        if len(self._entries) >= self.max_txs:
            raise MempoolFull(f"mempool holds {len(self._entries)} transactions, its limit")
        if self._bytes + entry.size > self.max_bytes:
            raise MempoolFull(f"mempool holds {self._bytes} bytes; adding {entry.size} would pass {self.max_bytes}")
        self._entries[entry.tx_hash] = entry
        self._by_signed[entry.signed_hash] = entry.tx_hash
        self._bytes += entry.size
        return True

    def get_batch(self, max_txs: int, max_bytes: int, is_includable: Callable[[PoolEntry], bool]) -> list[PoolEntry]:
        """The oldest entries that fit a block, skipping those ``is_includable`` rejects (e.g. expired)."""
        out: list[PoolEntry] = []
        size = 0
        for e in self._entries.values():
            if len(out) >= max_txs or size + e.size > max_bytes:
                break
            if is_includable(e):
                out.append(e)
                size += e.size
        return out

    def process_remove(self, tx_hashes: Iterable[bytes]) -> int:
        """Drop committed or dead transactions by body hash (whichever signed version is held); returns how many
        were here."""
        n = 0
        for h in tx_hashes:
            e = self._entries.pop(h, None)
            if e is not None:
                del self._by_signed[e.signed_hash]
                self._bytes -= e.size
                n += 1
        return n

    def process_remove_senders(self, senders: Iterable[bytes]) -> int:
        """Evict every waiting transaction signed by one of ``senders`` (keys governance just revoked: they can
        never enter a block again); returns how many were dropped."""
        keys = set(senders)
        dead = [h for h, e in self._entries.items() if e.tx.body.sender in keys]
        return self.process_remove(dead)

    def get_entries(self) -> list[PoolEntry]:
        """All waiting entries, oldest first."""
        return list(self._entries.values())
