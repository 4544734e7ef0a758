"""Serving state-sync snapshots to joining nodes, and what a state-synced node remembers of its own snapshot.

The server (:class:`SnapshotServer`) answers GetSnapshot and GetChunk (P2P kinds 11 and 13) from ONE store snapshot
per offered height (:meth:`~qilian.storage.store.ChainStore.begin_snapshot`), so every chunk agrees with the
manifest's root while the node keeps committing. Its work runs on one thread of its own (a store snapshot is
confined to the thread that opened it; the event loop only hands requests over):

1. A session opens a store snapshot at the tip T (the snapshot height H = T: the flat state table holds the state
   after the tip) and scans the flat state once, in pages, bucketing every key by the first BUCKET_BITS bits of
   its path (``hash(0x00 ‖ flat key)``, the same pre-image as :func:`qilian.state.compute_state_path`): per bucket
   a count, a byte size and the flat keys, packed. That cuts the path space into chunks
   (:func:`qilian.state.snapshot.compute_cover`) whose subtree hashes are read from the tree itself.
2. The manifest needs a header and its commit that prove the session's state: header H + 1 proves the state after
   H. If the tip block T left the state unchanged (header T's root, the state after T − 1, is the session's — as
   after most empty blocks), the snapshot is the state after T − 1, proven by header T at once; otherwise it is
   the state after T, ready once the node has committed T + 1 (until then GetSnapshot answers "retry in
   RETRY_MS").
3. A chunk is its keys' values read through the session's snapshot, sorted by path.

Limits: at most MAX_SESSIONS sessions (a new one is opened when the newest is older than REFRESH_S and a joiner
asks); a session ends when idle for IDLE_S or older than MAX_AGE_S (an open snapshot pins the pages it sees: LMDB
cannot reuse pages freed after it, so the file grows by the node's writes for as long as it lives). The bucket
index costs about (flat key length + 2) bytes per state key.

Why P2P messages and not an HTTP route: the snapshot is the whole state of a consortium chain, which a node serves
only to nodes chain state admits (the transport's admission), as it does blocks; the frame limit, the canonical
decoding and the penalty for a hostile message come with the transport.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from qilian.execution.valsets import ValidatorSetBook
from qilian.node.threads import set_os_thread_name
from qilian.p2p.messages import (
    MAX_SNAPSHOT_PATH_ENTRIES,
    MAX_SNAPSHOT_WINDOW_SETS,
    Chunk,
    GetChunk,
    GetSnapshot,
    PathEntry,
    SnapshotManifest,
)
from qilian.sdk.statesync import MIN_SNAPSHOT_HEIGHT, compute_window_start
from qilian.sdk.verify import compute_trusted_power
from qilian.state import StateTree
from qilian.state.snapshot import (
    CHUNK_TARGET_ENTRIES,
    MAX_CHUNK_ENTRIES,
    ChunkSpec,
    compute_cover,
    compute_prefix_bytes,
)
from qilian.storage.store import ChainStore, StoreSnapshot, split_value_key
from qilian.types.codec import CodecError, decode_raw, encode_trusted
from qilian.types.core import Block, Genesis, ValidatorSet

if TYPE_CHECKING:
    from qilian.node.node import Node

log = logging.getLogger("qilian.snapshots")

BUCKET_BITS: Final = 16
"""Path bits a server buckets its state by while scanning (65,536 buckets); a bucket over a chunk's target is cut
further by its keys' paths."""
SCAN_PAGE: Final = 10_000
"""Flat entries read per page of the scan (the scan never holds the state's values)."""
MAX_SESSIONS: Final = 2
"""Snapshots offered at once (the newest, and the one before for joiners still fetching it)."""
REFRESH_S: Final = 120.0
"""A joiner asking for a snapshot gets a newer one than this only by waiting for it: a new session is opened when
the newest is older."""
IDLE_S: Final = 60.0
"""A session nobody fetched from for this long is closed."""
MAX_AGE_S: Final = 900.0
"""No session lives longer (bounds how long a store snapshot pins the database)."""
RETRY_MS: Final = 500
"""What a server tells a joiner to wait while a snapshot is prepared (scan, or the block above it)."""


# -- the record a state-synced node keeps -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StateSyncRecord:
    """What a state-synced store remembers of the snapshot it was built from (``m/state_sync``): the heights it
    holds, the validator sets of its window (it never held the states they are read from elsewhere) and the
    validator path that proved the snapshot (so it answers light clients, and later joiners, for the heights
    before its window)."""

    height: int
    """H: the snapshot is the state after block H; the node holds blocks from ``window_start`` through H, and
    executed every block from H + 1."""
    window_start: int
    """The first height whose block this node holds (no receipts below H + 1)."""
    spans: tuple[tuple[int, ValidatorSet], ...]
    """(first height, set) of the window's validator sets, in height order."""
    path: tuple[PathEntry, ...]
    """The verified validator path from genesis to H + 1."""

    def encode(self) -> bytes:
        """Canonical bytes (the store keeps them)."""
        return encode_trusted([self.height, self.window_start, [[h, s.encode()] for h, s in self.spans],
                               [e.to_wire() for e in self.path]])

    @classmethod
    def decode(cls, raw: bytes) -> StateSyncRecord:
        """Parse the stored record (written by this node; a malformed one is a corrupt store)."""
        h, w, spans, path = decode_raw(raw)
        return cls(h, w, tuple((int(f), ValidatorSet.decode(s)) for f, s in spans),
                   tuple(PathEntry.from_wire(e) for e in path))

    def get_set(self, height: int) -> ValidatorSet | None:
        """The set that signs ``height`` if it lies in the window (below it: unknown; above: not the record's)."""
        if not self.window_start <= height <= self.height or not self.spans:
            return None
        i = bisect_right([f for f, _ in self.spans], height) - 1
        return self.spans[i][1] if i >= 0 else None


def get_state_sync_record(store: ChainStore) -> StateSyncRecord | None:
    """The store's state-sync record, or None for a store that holds the chain from genesis."""
    raw = store.get_state_sync_record()
    if raw is None:
        return None
    try:
        return StateSyncRecord.decode(raw)
    except (CodecError, ValueError, TypeError) as exc:
        from qilian.storage.store import StoreCorrupt

        raise StoreCorrupt(f"the state-sync record is malformed: {exc}") from None


def describe_missing(record: StateSyncRecord | None, height: int, what: str = "block") -> str | None:
    """Why a state-synced node has no ``what`` at ``height`` (for the API's error), or None when it should."""
    if record is None:
        return None
    if height < record.window_start:
        return (f"{what} {height} is not on this node: it joined by state sync at height {record.height} and holds "
                f"blocks from {record.window_start} (ask a node that holds the whole chain)")
    if what == "receipts" and height <= record.height:
        return (f"receipts of block {height} are not on this node: it joined by state sync at height "
                f"{record.height} and never executed the blocks up to it")
    if what == "state" and height <= record.height:
        return (f"the state header {height} commits (after block {height - 1}) is not on this node: it joined by "
                f"state sync with the state after block {record.height}, proven from header {record.height + 1} "
                f"on")
    return None


# -- the validator path, for the API and for manifests ---------------------------------------------------------

def compute_validator_path(genesis: Genesis, snap: StoreSnapshot, get_set: Any, record: StateSyncRecord | None,
                           target: int) -> list[PathEntry]:
    """The validator path from genesis to ``target``: for each height h ≤ target whose signing set differs from
    h − 1's, its header, commit and set — and the header and commit of h − 1 where the 1/3 trust rule cannot carry a
    light client from the previous set. A state-synced node's path up to its snapshot's proving height comes from
    its record, the rest from the governance index (O(changes), never a scan of the headers); ``get_set(h)`` is the
    node's validator-set lookup. Raises LookupError when a needed block is not stored."""
    entries: list[PathEntry] = []
    trusted = genesis.validators
    after = 0
    if record is not None:
        after = record.height + 1
        for e in record.path:
            if decode_raw(e.header)[2] <= target:
                entries.append(e)
                trusted = ValidatorSet.decode(e.validators)
    for h in snap.get_validator_change_heights(target):
        if h <= after:
            continue
        block, prev_block = snap.get_block(h), snap.get_block(h - 1)
        commit, prev_commit = snap.get_commit(h), snap.get_commit(h - 1)
        vset = get_set(h)
        if block is None or prev_block is None or commit is None or prev_commit is None or vset is None:
            raise LookupError(f"block {h} or its parent is not fully stored")
        skip = 3 * compute_trusted_power(genesis, trusted, commit) > trusted.total_power
        entries.append(PathEntry(vset.encode(), block.header.encode(), commit.encode(),
                                 b"" if skip else prev_block.header.encode(), b"" if skip else prev_commit.encode()))
        trusted = vset
    return entries


# -- the server ------------------------------------------------------------------------------------------------

class _Session:
    """One offered snapshot; every field is touched on the server's thread only."""

    def __init__(self, snap: StoreSnapshot, height: int, root: bytes, now: float):
        self.snap = snap
        self.height = height
        self.root = root
        self.created = now
        self.used = now
        self.specs: list[ChunkSpec] = []
        self.buckets: dict[int, bytearray] = {}
        """Bucket → its flat keys, each as 2-byte length ‖ key."""
        self.manifest: SnapshotManifest | None = None


def _iter_packed(blob: bytes | bytearray) -> list[bytes]:
    out = []
    i, n = 0, len(blob)
    while i < n:
        k = int.from_bytes(blob[i:i + 2], "big")
        out.append(bytes(blob[i + 2:i + 2 + k]))
        i += 2 + k
    return out


class SnapshotServer:
    """Answers GetSnapshot and GetChunk (see the module docstring)."""

    def __init__(self, node: Node, enabled: bool = True, chunk_entries: int = CHUNK_TARGET_ENTRIES):
        """``chunk_entries``: the most entries a chunk holds (``[sync] chunk_entries``)."""
        if not 1 <= chunk_entries <= MAX_CHUNK_ENTRIES:
            raise ValueError(f"chunk_entries must be in 1..{MAX_CHUNK_ENTRIES}")
        self.node = node
        self.enabled = enabled
        self.chunk_entries = chunk_entries
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="snapshots", initializer=set_os_thread_name,
                                        initargs=("qilian-snapshot",))
        self._sessions: list[_Session] = []
        """Oldest first; mutated on the server's thread only."""
        self._building = False
        self.chunks_served = 0
        self.manifests_served = 0

    def close(self) -> None:
        """Close every session and stop the thread."""
        def close_all() -> None:
            for s in self._sessions:
                s.snap.close()
            self._sessions.clear()
        try:
            self._pool.submit(close_all).result(timeout=30)
        except Exception:  # the store may be closing already
            log.debug("closing snapshot sessions failed", exc_info=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def on_get_snapshot(self, msg: GetSnapshot) -> SnapshotManifest:
        """The manifest of the newest snapshot, or "retry" / "none" (SnapshotManifest with height 0)."""
        if not self.enabled:
            return _none(0)
        loop = asyncio.get_running_loop()
        answer, start_build = await loop.run_in_executor(self._pool, self._get_manifest, msg.height)
        if start_build:
            self._building = True
            fut = loop.run_in_executor(self._pool, self._open_session)
            fut.add_done_callback(self._on_session_built)
        if answer.height:
            self.manifests_served += 1
        return answer

    def _on_session_built(self, fut: asyncio.Future[None]) -> None:
        self._building = False
        if not fut.cancelled() and fut.exception() is not None:
            log.error("preparing a snapshot failed", exc_info=fut.exception())

    async def on_get_chunk(self, msg: GetChunk) -> Chunk:
        """One chunk of an offered snapshot (``found`` False once the snapshot is gone)."""
        if not self.enabled:
            return Chunk(msg.height, msg.index, False, ())
        chunk = await asyncio.get_running_loop().run_in_executor(self._pool, self._get_chunk, msg.height, msg.index)
        if chunk.found:
            self.chunks_served += 1
        return chunk

    # -- the server's thread --------------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        keep = []
        for s in self._sessions:
            if now - s.used > IDLE_S or now - s.created > MAX_AGE_S:
                log.info("snapshot at height %d closed (idle or too old)", s.height)
                s.snap.close()
            else:
                keep.append(s)
        self._sessions = keep

    def _get_manifest(self, height: int) -> tuple[SnapshotManifest, bool]:
        """(answer, whether to open a new session)."""
        now = time.monotonic()
        self._expire(now)
        if height:
            for s in self._sessions:
                if s.manifest is not None and s.manifest.height == height:
                    s.used = now
                    return s.manifest, False
            return _none(0), False
        if not self._is_eligible():
            return _none(0), False
        newest = self._sessions[-1] if self._sessions else None
        if newest is not None and now - newest.created <= REFRESH_S:
            newest.used = now
            if newest.manifest is None:
                self._complete_manifest(newest)
            if newest.manifest is not None:
                return newest.manifest, False
            return _none(RETRY_MS), False
        return _none(RETRY_MS), not self._building

    def _is_eligible(self) -> bool:
        """Whether this node holds what a snapshot of its tip needs: a tip of at least MIN_SNAPSHOT_HEIGHT and every
        block of the window below it."""
        store, genesis = self.node.store, self.node.genesis
        tip = store.get_tip().height
        if tip < MIN_SNAPSHOT_HEIGHT:
            return False
        start = compute_window_start(genesis, tip)
        return store.get_block_bytes(start) is not None

    def _open_session(self) -> None:
        """Open a store snapshot at the tip and build its chunk list (the scan: seconds for a million keys)."""
        t0 = time.monotonic()
        if self._sessions and t0 - self._sessions[-1].created <= REFRESH_S:
            return  # two joiners asked at once: one session serves both
        node = self.node
        snap = node.store.begin_snapshot()
        try:
            tip = snap.get_tip()
            session = _Session(snap, tip.height, tip.state_root, t0)
            self._build_index(session)
        except BaseException:
            snap.close()
            raise
        while len(self._sessions) >= MAX_SESSIONS:
            old = self._sessions.pop(0)
            old.snap.close()
        self._sessions.append(session)
        log.info("snapshot at height %d: %d chunks of %d keys, indexed in %.1f s", session.height,
                 len(session.specs), sum(s.count for s in session.specs), time.monotonic() - t0)

    def _build_index(self, s: _Session) -> None:
        hash_fn = self.node.suite.hash
        nb = 1 << BUCKET_BITS
        counts, sizes = [0] * nb, [0] * nb
        buckets = s.buckets
        shift = 32 - BUCKET_BITS
        after = b""
        while True:
            page = s.snap.get_value_page(after, SCAN_PAGE)
            if not page:
                break
            for fk, value in page:
                b = int.from_bytes(hash_fn(b"\x00" + fk)[:4], "big") >> shift
                counts[b] += 1
                sizes[b] += len(fk) - 1 + len(value)
                blob = buckets.get(b)
                if blob is None:
                    blob = buckets[b] = bytearray()
                blob += len(fk).to_bytes(2, "big")
                blob += fk
            after = page[-1][0]

        def get_bucket_items(b: int) -> list[tuple[int, int]]:
            fks = _iter_packed(buckets.get(b, b""))
            values = s.snap.get_flat_values(fks)
            return sorted((int.from_bytes(hash_fn(b"\x00" + fk), "big"), len(fk) - 1 + len(v or b""))
                          for fk, v in zip(fks, values, strict=True))

        tree = StateTree(hash_fn, s.snap)
        for depth, prefix, count in compute_cover(BUCKET_BITS, counts, sizes, get_bucket_items, self.chunk_entries):
            s.specs.append(ChunkSpec(depth, compute_prefix_bytes(prefix, depth), count,
                                     tree.get_subtree_hash(s.root, prefix, depth)))

    def _complete_manifest(self, s: _Session) -> None:
        """The manifest, once a header proves the session's state (root R, the state after the tip T it was
        opened at): header T itself when block T left the state as it found it — ``header T.state_root`` (the
        state after T − 1) is R, as after most empty blocks; the snapshot is then the state after H = T − 1 —
        else header T + 1, once the node has committed it (H = T). Either way the pair (header H + 1, its
        commit) proves the state after H, and the chunks are checked against exactly that root, so a server
        cannot pass one state off for another. The first case matters: a chain makes no block while it has no
        work, so an idle chain would otherwise never prove its tip's state."""
        node = self.node
        store = node.store
        tip_block = s.snap.get_block(s.height)
        block: Block | None
        if (tip_block is not None and tip_block.header.state_root == s.root
                and s.height - 1 >= MIN_SNAPSHOT_HEIGHT):
            h = s.height - 1
            block, commit = tip_block, s.snap.get_commit(s.height)
        else:
            h = s.height
            block, commit = store.get_block(h + 1), store.get_commit(h + 1)
        if block is None or commit is None or block.last_commit is None:
            return
        if store.get_block_bytes(compute_window_start(node.genesis, h)) is None:
            return
        genesis = node.genesis
        record = get_state_sync_record(store)
        start = compute_window_start(genesis, h)
        book = ValidatorSetBook(node.suite, node.rules, lambda: (s.height, s.root), self._header_root(s),
                                StateTree(node.suite.hash, s.snap).get_value,
                                record.get_set if record is not None else None)
        try:
            heights = [start] + [x for x in s.snap.get_validator_change_heights(h) if x > start]
            sets: dict[bytes, ValidatorSet] = {}
            for x in heights:
                vset = book.get(x)
                if vset is None:
                    raise LookupError(f"the validator set of height {x} is unknown")
                sets[vset.compute_hash(node.suite)] = vset
            with store.begin_snapshot() as live:  # holds header H + 1 and its governance-index entry
                path = compute_validator_path(genesis, live, book.get, record, h + 1)
        except LookupError as exc:
            log.warning("cannot offer the snapshot at height %d: %s", h, exc)
            return
        if len(path) > MAX_SNAPSHOT_PATH_ENTRIES or len(sets) > MAX_SNAPSHOT_WINDOW_SETS:
            log.warning("cannot offer the snapshot at height %d: %d validator-set changes (limit %d)", h,
                        len(path), MAX_SNAPSHOT_PATH_ENTRIES)
            return
        s.manifest = SnapshotManifest(h, 0, block.header.encode(), commit.encode(), block.last_commit.encode(),
                                      tuple(path), tuple(v.encode() for v in sets.values()), tuple(s.specs))

    @staticmethod
    def _header_root(s: _Session) -> Any:
        def get(height: int) -> bytes | None:
            b = s.snap.get_block(height)
            return None if b is None else b.header.state_root
        return get

    def _get_chunk(self, height: int, index: int) -> Chunk:
        now = time.monotonic()
        self._expire(now)
        s = next((x for x in self._sessions if x.manifest is not None and x.manifest.height == height), None)
        if s is None or not 0 <= index < len(s.specs):
            return Chunk(height, index, False, ())
        s.used = now
        spec = s.specs[index]
        hash_fn = self.node.suite.hash
        if spec.depth <= BUCKET_BITS:
            lo = spec.get_prefix_int() << (BUCKET_BITS - spec.depth)
            hi = (spec.get_prefix_int() + 1) << (BUCKET_BITS - spec.depth)
            fks = []
            for b in range(lo, hi):
                blob = s.buckets.get(b)
                if blob:
                    fks += _iter_packed(blob)
            first = end = -1
        else:
            fks = _iter_packed(s.buckets.get(spec.get_prefix_int() >> (spec.depth - BUCKET_BITS), b""))
            first, end = spec.get_path_range()
        rows = []
        for fk, value in zip(fks, s.snap.get_flat_values(fks), strict=True):
            path = int.from_bytes(hash_fn(b"\x00" + fk), "big")
            if first >= 0 and not first <= path < end:
                continue
            if value is None:  # cannot happen: the keys were read in this very snapshot
                raise RuntimeError(f"snapshot at height {height} lost a key")
            ns, key = split_value_key(fk)
            rows.append((path, (ns, key, value)))
        rows.sort(key=_first)
        return Chunk(height, index, True, tuple(e for _, e in rows))


def _first(row: tuple[int, tuple[str, bytes, bytes]]) -> int:
    return row[0]


def _none(retry_ms: int) -> SnapshotManifest:
    return SnapshotManifest(0, retry_ms, b"", b"", b"", (), (), ())


__all__ = ["SnapshotServer", "StateSyncRecord", "compute_validator_path", "describe_missing",
           "get_state_sync_record"]
