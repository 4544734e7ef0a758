"""Joining by state sync (``[sync] state_sync = true``, ``qilian node join --state-sync``): fetch a verified
snapshot of a recent height instead of re-executing the chain from genesis, then block-sync the rest.

Order of work, before the node itself starts (its store is empty or at genesis):

1. A P2P transport of its own (admission by the *genesis* state — the only state the joiner has) dials the seeds
   and the genesis nodes' endpoints, and asks a peer for a snapshot (GetSnapshot). A manifest is checked by the
   light-client rules (:func:`qilian.sdk.statesync.verify_manifest`): from the genesis validators along the
   validator path to header H + 1's commit, and the chunk list against header H + 1's state root.
2. The replay window's blocks (H down to H + 1 − max(tx_validity_blocks, evidence age)) are fetched with GetBlocks,
   newest first, and checked by the hash chain from header H + 1 down (:func:`qilian.sdk.statesync
   .check_window_block`); they are stored with their transaction index and governance index entries, never
   executed — so the joiner refuses exactly the replays its peers refuse (:func:`qilian.execution.rules
   .check_tx_window`) and checks evidence against the same validator sets.
3. Every chunk is checked against its spec (:func:`qilian.state.snapshot.check_chunk`) as it arrives; its tree
   nodes and flat values are written at once (RocksDB) or spilled as sorted runs that one merge bulk-loads in
   key order at the end (LMDB; :class:`_SortedRuns`).
4. The top of the tree, genesis, the tip (block H with the state after H) and the sync record are written in one
   final batch; the store is closed and swapped in for the node's data directory.

Crash safety: all of it is built in a staging directory beside the data directory (``data.statesync``); only the
final batch makes it a chain, a marker file written after that batch says it is complete, and two renames swap
it in. :func:`process_recover_dirs`, run at every start, finishes a swap a crash interrupted, and deletes an
incomplete staging directory — the sync then starts over. A half-built store is never opened as a chain.

A peer whose manifest, block or chunk does not verify is disconnected (as for any hostile message) and the sync
starts over with another peer. If no peer offers a snapshot for GIVE_UP_S the node falls back to block sync from
genesis.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from qilian.crypto import get_suite
from qilian.execution.contracts import compute_genesis_writes
from qilian.execution.nodes import EndpointError, compute_endpoint, get_registered_node, get_registered_nodes
from qilian.execution.rules import ChainRules
from qilian.node.config import NodeConfig, load_genesis
from qilian.node.snapshots import StateSyncRecord
from qilian.node.threads import set_os_thread_name
from qilian.p2p.messages import (
    MAX_BLOCKS_PER_REPLY,
    Blocks,
    Chunk,
    GetBlocks,
    GetChunk,
    GetSnapshot,
    SnapshotManifest,
    Status,
)
from qilian.p2p.transport import Peer, PeerSpec, Transport
from qilian.sdk.keys import get_password_from_env, load_key
from qilian.sdk.statesync import ManifestInvalid, TrustedSnapshot, check_window_block, verify_manifest
from qilian.state.snapshot import ChunkInvalid, check_chunk, compute_top_nodes
from qilian.storage.store import ChainStore, ChainTip, compute_value_key, get_store_engine
from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import Commit, Genesis, ValidatorSet
from qilian.types.struct import Wire

log = logging.getLogger("qilian.statesync")

STAGING_SUFFIX: Final = ".statesync"
"""The staging directory is the data directory's name with this suffix."""
OLD_SUFFIX: Final = ".pre-statesync"
"""Where the data directory it replaces goes during the swap (deleted after)."""
COMPLETE_MARK: Final = "STATE_SYNC_COMPLETE"
"""File written (and synced) in the staging directory once its store is complete."""
REQUEST_TIMEOUT_S: Final = 60.0
"""Longest wait for one answer (a server may be scanning its state first)."""
CHUNKS_IN_FLIGHT: Final = 4
"""Chunk requests outstanding at once (pipelining: the server reads the next while this node checks one)."""
GIVE_UP_S: Final = 120.0
"""No peer offers a snapshot for this long: fall back to block sync from genesis."""
RUN_ENTRIES: Final = 131_072
"""Entries buffered before they are spilled as a sorted run (a few tens of MB)."""
MERGE_BATCH: Final = 200_000
"""Entries per transaction of the final bulk load."""
MAX_ATTEMPTS: Final = 20
"""Sync attempts (each with a fresh manifest) before falling back to block sync."""


class SyncFailed(Exception):
    """This attempt failed without a peer to blame (the snapshot expired, a peer left): start over."""


class PeerFault(Exception):
    """A peer sent something that does not verify; it is disconnected and the attempt starts over."""

    def __init__(self, address: bytes, reason: str):
        super().__init__(reason)
        self.address = address


@dataclass(frozen=True)
class StateSyncReport:
    """What a state sync did and how fast (logged, and shown in ``/status``)."""

    height: int
    """The snapshot's height H."""
    peer: str
    """The peer it came from."""
    chunks: int
    """Chunks fetched."""
    entries: int
    """State entries installed."""
    state_bytes: int
    """Bytes of namespace, key and value installed."""
    window_blocks: int
    """Blocks of the replay window fetched and indexed."""
    window_bytes: int
    """Their encoded bytes."""
    manifest_s: float
    """From start to a verified manifest (includes waiting for the server to prepare it)."""
    window_s: float
    """Fetching, checking and storing the window blocks."""
    state_s: float
    """Fetching, checking and storing the chunks."""
    finish_s: float
    """The final batch and the swap."""
    total_s: float
    """All of it."""
    worker_s: dict[str, float]
    """Seconds of checking and storing, per step (window and chunks); the rest of each phase is the network and
    the server."""
    cpu_s: float
    """CPU seconds this process spent on the sync (all threads): what the sync costs whatever else the machine
    runs."""

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["state_mb_per_s"] = round(self.state_bytes / 1e6 / max(self.state_s, 1e-9), 2)
        doc["entries_per_s"] = round(self.entries / max(self.state_s, 1e-9))
        doc["window_blocks_per_s"] = round(self.window_blocks / max(self.window_s, 1e-9), 1)
        return doc


# -- directories ---------------------------------------------------------------------------------------------

def get_staging_path(cfg: NodeConfig) -> Path:
    return cfg.data_path.with_name(cfg.data_path.name + STAGING_SUFFIX)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_recover_dirs(cfg: NodeConfig) -> None:
    """Run at every start: finish a swap a crash interrupted, or drop an incomplete staging directory."""
    data, staging = cfg.data_path, get_staging_path(cfg)
    old = data.with_name(data.name + OLD_SUFFIX)
    if staging.exists():
        if (staging / COMPLETE_MARK).exists():
            log.info("finishing the swap of a completed state sync (%s)", staging)
            _process_swap(data, staging)
        else:
            log.info("removing an incomplete state sync (%s): it starts over", staging)
            shutil.rmtree(staging)
    if old.exists():
        shutil.rmtree(old)
    (data / COMPLETE_MARK).unlink(missing_ok=True)


def _process_swap(data: Path, staging: Path) -> None:
    old = data.with_name(data.name + OLD_SUFFIX)
    if old.exists():
        shutil.rmtree(old)
    if data.exists():
        os.rename(data, old)
    os.rename(staging, data)
    _fsync_dir(data.parent)
    (data / COMPLETE_MARK).unlink(missing_ok=True)
    if old.exists():
        shutil.rmtree(old)


def is_state_sync_needed(cfg: NodeConfig) -> bool:
    """Whether this node should state-sync: asked for, and its store holds no block yet (a node with blocks
    catches up by block sync: its state is its own)."""
    if not cfg.state_sync:
        return False
    if get_store_engine(cfg.data_path) is None:
        return True
    store = ChainStore(cfg.data_path, readonly=True)
    try:
        return store.get_tip().height == 0 if store.get_genesis() is not None else True
    finally:
        store.close()


# -- talking to peers ------------------------------------------------------------------------------------------

class _Peers:
    """Request/answer matching over the sync's own transport: one outstanding request per (peer, kind)."""

    def __init__(self) -> None:
        self.transport: Transport | None = None
        self.heights: dict[bytes, int] = {}
        self.banned: set[bytes] = set()
        self._waiting: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self._peer_up = asyncio.Event()
        self.last_offer = time.monotonic()
        """When a peer last offered a snapshot (or the sync started)."""

    def on_peer_up(self, peer: Peer) -> None:
        self.heights[peer.spec.address] = peer.height
        self._peer_up.set()

    def on_message(self, peer: Peer, msg: Any) -> None:
        a = peer.spec.address
        if isinstance(msg, Status):
            self.heights[a] = msg.height
            return
        if isinstance(msg, SnapshotManifest):
            key: tuple[Any, ...] = ("manifest", a)
        elif isinstance(msg, Blocks):
            key = ("blocks", a)
        elif isinstance(msg, Chunk):
            key = ("chunk", a, msg.height, msg.index)
        else:
            return  # consensus and mempool gossip: not for a node that is not running yet
        fut = self._waiting.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def get_candidates(self) -> list[bytes]:
        """Connected peers not banned in this sync, most advanced first."""
        assert self.transport is not None
        live = [a for a in self.transport.peers if a not in self.banned]
        return sorted(live, key=lambda a: -self.heights.get(a, 0))

    async def wait_peer(self, timeout_s: float) -> bytes | None:
        deadline = time.monotonic() + timeout_s
        while True:
            cands = self.get_candidates()
            if cands:
                return cands[0]
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._peer_up.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._peer_up.wait(), min(left, 1.0))

    async def request(self, address: bytes, msg: Wire, key: tuple[Any, ...]) -> Any:
        """Send ``msg`` and wait for its answer; SyncFailed when the peer is gone or silent."""
        assert self.transport is not None
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        if not self.transport.send(address, msg):
            self._waiting.pop(key, None)
            raise SyncFailed("the peer disconnected")
        try:
            return await asyncio.wait_for(fut, REQUEST_TIMEOUT_S)
        except TimeoutError:
            raise SyncFailed(f"no answer to {type(msg).__name__} within {REQUEST_TIMEOUT_S:.0f} s") from None
        finally:
            self._waiting.pop(key, None)

    def punish(self, address: bytes, reason: str) -> None:
        """A hostile answer: disconnect the peer (as the node does for any invalid message) and use it no more
        in this sync."""
        assert self.transport is not None
        self.banned.add(address)
        self.transport.violations += 1
        p = self.transport.peers.get(address)
        log.warning("state sync: disconnecting peer %s: %s", p.spec.name if p is not None else address.hex()[:16],
                    reason)
        if p is not None:
            p.close()

    def get_name(self, address: bytes) -> str:
        assert self.transport is not None
        p = self.transport.peers.get(address)
        return p.spec.name if p is not None else address.hex()[:16]


# -- the sync --------------------------------------------------------------------------------------------------

RUN_PIECE: Final = 8192
"""Items per piece of a run file (what the merge holds in memory per run)."""


_PIECE_HEAD = struct.Struct(">I")


def _read_run(path: Path) -> Iterator[list[bytes]]:
    """The ``[key, value]`` items of a run file, in order: pieces of RUN_PIECE items, each ``u32 length ‖``
    the canonical encoding of its list (:meth:`_SortedRuns.spill`)."""
    with open(path, "rb", buffering=1 << 20) as f:
        while head := f.read(_PIECE_HEAD.size):
            (n,) = _PIECE_HEAD.unpack(head)
            yield from decode_raw(f.read(n), max_bytes=n)


class _SortedRuns:
    """The entries a snapshot adds to tables keyed at random — tree nodes (``version ‖ hash``), flat values (by
    namespace and key), the transaction hash map — buffered, spilled to disk as sorted runs, and merged once into
    the store in key order (:meth:`ChainStore.process_install_sorted`). Written batch by batch instead, a B-tree
    rewrites most of its pages on every batch once it is large: at a million keys that was 67 of a sync's
    155 seconds. Memory stays bounded by RUN_ENTRIES; the runs live in the staging directory.

    On an engine whose bulk load needs no order (RocksDB: :attr:`KVEngine.is_bulk_load_order_free`) nothing is
    spilled: each window batch and each chunk goes to the store as it is checked (``direct``), RocksDB sorts in its
    own threads, and the Python merge — the largest single step of a sync (22.7 of 98 s at 1M keys) — is gone.
    A value arrives once with its final value, by construction: the chunk specs are a disjoint cover of the path
    space (:func:`check_chunk_specs`), a chunk's entries lie under its own prefix in strictly increasing path
    order (:func:`check_chunk`), and a flat key has one path. A node is content-addressed: written twice, it is
    the same bytes. A hash-map prefix may gather locations from several window batches: each batch is joined
    with what the table holds (:meth:`ChainStore.process_install_unsorted`)."""

    KINDS: Final = ("nodes", "values", "txmap")

    def __init__(self, directory: Path, direct: ChainStore | None = None):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.direct = direct
        self.pending: dict[str, dict[bytes, bytes]] = {k: {} for k in self.KINDS}
        self.runs: dict[str, list[Path]] = {k: [] for k in self.KINDS}
        self._count = 0

    def add_nodes(self, nodes: dict[bytes, bytes]) -> None:
        if self.direct is not None:
            self.direct.process_install_unsorted("nodes", nodes)
            return
        self.pending["nodes"].update(nodes)
        self._count += len(nodes)
        self._check()

    def add_values(self, values: dict[tuple[str, bytes], bytes]) -> None:
        if self.direct is not None:
            self.direct.process_install_unsorted("values", {compute_value_key(ns, k): v
                                                            for (ns, k), v in values.items()})
            return
        self.pending["values"].update((compute_value_key(ns, k), v) for (ns, k), v in values.items())
        self._count += len(values)
        self._check()

    def add_txmap(self, entries: dict[bytes, bytes]) -> None:
        if self.direct is not None:
            self.direct.process_install_unsorted("txmap", entries)
            return
        d = self.pending["txmap"]
        for p, locs in entries.items():
            d[p] = d.get(p, b"") + locs
        self._count += len(entries)
        self._check()

    def _check(self) -> None:
        if self._count >= RUN_ENTRIES:
            self.spill()

    def spill(self) -> None:
        """Write every pending table as one sorted run."""
        for kind, d in self.pending.items():
            if not d:
                continue
            path = self.dir / f"{kind}-{len(self.runs[kind]):05d}.run"
            items = [[k, d[k]] for k in sorted(d)]
            with open(path, "wb", buffering=1 << 20) as f:
                for i in range(0, len(items), RUN_PIECE):
                    raw = encode_trusted(items[i:i + RUN_PIECE])
                    f.write(_PIECE_HEAD.pack(len(raw)) + raw)
            self.runs[kind].append(path)
            self.pending[kind] = {}
        self._count = 0

    def process_merge(self, store: ChainStore) -> None:
        """Merge every run into the store, table by table, in key order: equal keys are one tree node (content
        addressed: kept once) or one hash-map prefix (locations joined); a flat key twice is a broken chunk
        cover and refused."""
        self.spill()
        for kind in self.KINDS:
            batch: list[tuple[bytes, bytes]] = []
            # Items compare by key first; equal keys (a node, a hash-map prefix) then by value, which is fine.
            for k, v in heapq.merge(*(_read_run(p) for p in self.runs[kind])):
                if batch and batch[-1][0] == k:
                    if kind == "txmap":
                        batch[-1] = (k, batch[-1][1] + v)
                    elif kind == "values":
                        raise SyncFailed(f"state key {k[:40]!r} installed twice")
                    continue
                if len(batch) >= MERGE_BATCH:
                    store.process_install_sorted(kind, batch[:-1])
                    batch = batch[-1:]
                batch.append((k, v))
            if batch:
                store.process_install_sorted(kind, batch)
        shutil.rmtree(self.dir, ignore_errors=True)


class _Installer:
    """One attempt: window blocks and chunks from one peer into a fresh staging store. Store writes and the
    CPU-heavy checks run on one worker thread, in order; the event loop only moves messages."""

    def __init__(self, cfg: NodeConfig, genesis: Genesis, peers: _Peers, address: bytes, snap: TrustedSnapshot,
                 worker: ThreadPoolExecutor):
        self.cfg = cfg
        self.genesis = genesis
        self.suite = get_suite(genesis.suite)
        self.peers = peers
        self.address = address
        self.snap = snap
        self.worker = worker
        self.staging = get_staging_path(cfg)
        if self.staging.exists():
            shutil.rmtree(self.staging)
        # Not synced batch by batch: this store is discarded unless finish() completes (and flushes) it.
        self.store = ChainStore(self.staging, engine=cfg.store_engine or None, durable=False)
        self.runs = _SortedRuns(self.staging / "runs",
                                direct=self.store if self.store.kv.is_bulk_load_order_free else None)
        self.headers: dict[int, tuple[bytes, int]] = {}
        """Window height → (validators hash, time)."""
        self.window_bytes = 0
        self.entries = 0
        self.state_bytes = 0
        self.cpu: dict[str, float] = {"window_check": 0.0, "window_store": 0.0, "chunk_check": 0.0,
                                      "chunk_store": 0.0}
        """Seconds the worker spent per step (where a sync's time goes; the rest is waiting for the network)."""

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def close(self) -> None:
        self.store.close()

    # -- window ----------------------------------------------------------------------------------------------

    async def fetch_window(self) -> int:
        """Fetch, check and store the window's blocks, newest first; returns how many."""
        snap = self.snap
        expected = snap.block_id
        above_commit = snap.last_commit  # the commit of the height being checked, as the block above carries it
        hi = snap.height
        count = 0
        while hi >= snap.window_start:
            lo = max(snap.window_start, hi - MAX_BLOCKS_PER_REPLY + 1)
            raws = await self._fetch_range(lo, hi)
            expected, above_commit, n = await self._run(self._check_and_store, raws, expected, above_commit)
            count += n
            hi = lo - 1
        return count

    async def _fetch_range(self, lo: int, hi: int) -> list[bytes]:
        got: list[bytes] = []
        while lo + len(got) <= hi:
            start = lo + len(got)
            msg = await self.peers.request(self.address, GetBlocks(start, hi - start + 1), ("blocks", self.address))
            if not msg.items:
                raise SyncFailed(f"the peer has no block {start} (below its own window?)")
            for item in msg.items[:hi - start + 1]:
                got.append(item.block)
        return got

    def _check_and_store(self, raws: list[bytes], expected: bytes, above_commit: Commit,
                         ) -> tuple[bytes, Commit, int]:
        """Worker thread: check blocks lo..hi top-down by the hash chain, then store them (each with the commit
        the block above it carries)."""
        t0 = time.perf_counter()
        items = []
        for raw in reversed(raws):
            try:
                wb = check_window_block(self.genesis, self.snap, raw, expected)
            except ManifestInvalid as exc:
                raise PeerFault(self.address, str(exc)) from None
            expected = wb.header.prev_block_id
            items.append((wb.height, wb.raw, above_commit, wb.tx_hashes, wb.gov_positions))
            self.headers[wb.height] = (wb.header.validators_hash, wb.header.time_ms)
            self.window_bytes += len(raw)
            if wb.last_commit is not None:
                above_commit = wb.last_commit
        t1 = time.perf_counter()
        self.store.process_install_blocks(items)
        self.runs.add_txmap(ChainStore.compute_install_txmap((h, hashes) for h, _, _, hashes, _ in items))
        self.cpu["window_check"] += t1 - t0
        self.cpu["window_store"] += time.perf_counter() - t1
        return expected, above_commit, len(items)

    # -- state -----------------------------------------------------------------------------------------------

    async def fetch_state(self) -> list[bytes]:
        """Fetch, check and store every chunk (CHUNKS_IN_FLIGHT requests outstanding); the subtree roots."""
        specs = self.snap.chunks
        refs: list[bytes] = [b""] * len(specs)
        h = self.snap.height
        queue = list(range(len(specs)))
        in_flight: dict[int, asyncio.Task[Any]] = {}

        def ask(i: int) -> asyncio.Task[Any]:
            return asyncio.ensure_future(self.peers.request(self.address, GetChunk(h, i), ("chunk", self.address, h,
                                                                                          i)))
        try:
            nxt = 0
            while nxt < len(queue) or in_flight:
                while nxt < len(queue) and len(in_flight) < CHUNKS_IN_FLIGHT:
                    in_flight[queue[nxt]] = ask(queue[nxt])
                    nxt += 1
                i = min(in_flight)
                msg: Chunk = await in_flight.pop(i)
                if not msg.found:
                    raise SyncFailed(f"the peer no longer serves the snapshot at height {h}")
                refs[i] = await self._run(self._check_and_store_chunk, i, msg)
        finally:
            for t in in_flight.values():
                t.cancel()
        return refs

    def _check_and_store_chunk(self, i: int, msg: Chunk) -> bytes:
        entries = msg.entries
        t0 = time.perf_counter()
        try:
            v = check_chunk(self.suite.hash, self.snap.chunks[i], entries, self.snap.height)
        except ChunkInvalid as exc:
            raise PeerFault(self.address, f"chunk {i} of the snapshot at height {self.snap.height}: {exc}") from None
        t1 = time.perf_counter()
        self.runs.add_nodes(v.nodes)
        self.runs.add_values(v.writes)
        self.cpu["chunk_check"] += t1 - t0
        self.cpu["chunk_store"] += time.perf_counter() - t1
        self.entries += len(entries)
        self.state_bytes += sum(len(ns.encode()) + len(k) + len(val) for ns, k, val in entries)
        return v.top_ref

    # -- finish ----------------------------------------------------------------------------------------------

    def finish(self, refs: list[bytes]) -> None:
        """Worker thread: the final batch, the completion marker, the swap."""
        t0 = time.perf_counter()
        self.runs.process_merge(self.store)
        self.cpu["merge"] = time.perf_counter() - t0
        snap, suite = self.snap, self.suite
        root, top = compute_top_nodes(suite.hash, snap.chunks, refs, snap.height)
        if root != snap.state_root:  # cannot happen: the chunk list was tied to the root, every chunk to its spec
            raise SyncFailed("the installed state does not have the snapshot's root")
        spans: list[tuple[int, ValidatorSet]] = []
        changes: list[int] = []
        prev: bytes | None = None
        for h in range(snap.window_start, snap.height + 1):
            vh = self.headers[h][0]
            if vh != prev:
                spans.append((h, snap.window_sets[vh]))
                if prev is not None:
                    changes.append(h)
            prev = vh
        record = StateSyncRecord(snap.height, snap.window_start, tuple(spans), snap.path)
        tip = ChainTip(snap.height, snap.block_id, self.headers[snap.height][1], snap.state_root, snap.receipts_root)
        self.store.process_install_finish(self.genesis, tip, top, record.encode(), changes,
                                          self.headers[snap.height][0])
        self.store.process_flush()
        self.store.close()
        marker = self.staging / COMPLETE_MARK
        with open(marker, "wb") as f:
            f.write(b"complete\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.staging)
        _process_swap(self.cfg.data_path, self.staging)


def _get_genesis_admission(genesis: Genesis) -> tuple[Callable[[bytes], str | None], list[PeerSpec]]:
    """Admission and dial targets from the genesis state (all a joiner has before its snapshot)."""
    suite = get_suite(genesis.suite)
    writes = compute_genesis_writes(genesis)

    def get(ns: str, key: bytes) -> bytes | None:
        return writes.get((ns, key))

    def admit(public_key: bytes) -> str | None:
        reg = get_registered_node(get, public_key)
        return reg.label if reg is not None else None

    targets = []
    for reg in get_registered_nodes(ChainRules.from_genesis(genesis, suite), get):
        if reg.endpoint:
            host, port = compute_endpoint(reg.endpoint)
            targets.append(PeerSpec(reg.label, reg.public_key, suite.compute_address(reg.public_key), host, port))
    return admit, targets


async def run_state_sync(cfg: NodeConfig) -> StateSyncReport | None:
    """State-sync the node of ``cfg`` into its data directory (see the module docstring). Returns the report, or
    None when no peer offered a snapshot (the node then block-syncs from genesis)."""
    genesis = load_genesis(cfg.genesis_path)
    suite = get_suite(genesis.suite)
    key = load_key(cfg.key_path, get_password_from_env())
    admit, targets = _get_genesis_admission(genesis)
    seeds = []
    for text in cfg.seeds:
        try:
            seeds.append(compute_endpoint(text))
        except EndpointError as exc:
            raise ValueError(f"{cfg.home}/node.toml: [p2p] seeds: {exc}") from None
    book = [PeerSpec(p["name"], bytes.fromhex(p["public_key"]), suite.compute_address(bytes.fromhex(p["public_key"])),
                     p["host"], int(p["port"])) for p in cfg.peers]
    peers = _Peers()
    transport = Transport(
        suite=suite, private_key=key.private_key, public_key=key.public_key, chain_id=genesis.chain_id,
        genesis_hash=genesis.compute_hash(suite), peers=book, seeds=tuple(seeds), listen_host=cfg.p2p_host,
        listen_port=cfg.p2p_port, tls_dir=cfg.tls_dir, on_message=peers.on_message, on_peer_up=peers.on_peer_up,
        get_height=lambda: 0, admit=admit, blocked=frozenset(cfg.blocked_peers))
    transport.set_targets(targets)
    peers.transport = transport
    worker = ThreadPoolExecutor(1, thread_name_prefix="statesync", initializer=set_os_thread_name,
                                initargs=("qilian-statesync",))
    await transport.start()
    try:
        return await process_sync_loop(cfg, genesis, peers, worker)
    finally:
        with contextlib.suppress(Exception):
            await transport.stop()
        worker.shutdown(wait=True, cancel_futures=True)
        staging = get_staging_path(cfg)
        if staging.exists() and not (staging / COMPLETE_MARK).exists():
            shutil.rmtree(staging, ignore_errors=True)


async def process_sync_loop(cfg: NodeConfig, genesis: Genesis, peers: _Peers, worker: ThreadPoolExecutor,
                            ) -> StateSyncReport | None:
    """Attempts until one installs a snapshot: a peer whose answer does not verify is disconnected and the next
    attempt goes to another; a peer that offers none is passed over. None when no peer offers a snapshot (for
    GIVE_UP_S, or none of those connected) or MAX_ATTEMPTS failed."""
    t0 = time.monotonic()
    cpu0 = time.process_time()
    for attempt in range(MAX_ATTEMPTS):
        address = await peers.wait_peer(GIVE_UP_S)
        if address is None:
            log.warning("state sync: no peer connected within %.0f s", GIVE_UP_S)
            return None
        try:
            report = await _attempt(cfg, genesis, peers, address, worker, t0)
        except PeerFault as exc:
            peers.punish(exc.address, str(exc))
            continue
        except (SyncFailed, OSError, ValueError) as exc:  # no one to blame: a timeout, a gone peer, the disk
            log.warning("state sync attempt %d with %s failed: %s; starting over", attempt + 1,
                        peers.get_name(address), exc)
            if len(peers.get_candidates()) > 1:
                peers.banned.add(address)  # not punished (it may be slow, or have moved on): others first
            if time.monotonic() - peers.last_offer > GIVE_UP_S:
                log.warning("state sync: no peer offered a snapshot for %.0f s; block sync from genesis", GIVE_UP_S)
                return None
            await asyncio.sleep(1.0)
            continue
        if report is None:  # this peer offers no snapshot
            peers.banned.add(address)
            if not peers.get_candidates():
                log.warning("state sync: no connected peer offers a snapshot; block sync from genesis")
                return None
            continue
        report = replace(report, cpu_s=round(time.process_time() - cpu0, 2))
        log.info("state sync done: %s", report.to_doc())
        return report
    log.warning("state sync: %d attempts failed; block sync from genesis", MAX_ATTEMPTS)
    return None


async def _attempt(cfg: NodeConfig, genesis: Genesis, peers: _Peers, address: bytes, worker: ThreadPoolExecutor,
                   t0: float) -> StateSyncReport | None:
    """One try with one peer: manifest, window, chunks, finish. None: the peer offers no snapshot."""
    name = peers.get_name(address)
    asked = time.monotonic()
    while True:
        manifest: SnapshotManifest = await peers.request(address, GetSnapshot(0), ("manifest", address))
        if manifest.height:
            peers.last_offer = time.monotonic()
            break
        if not manifest.retry_ms:
            log.info("state sync: %s offers no snapshot", name)
            return None
        if time.monotonic() - asked > GIVE_UP_S:
            raise SyncFailed(f"{name} kept preparing a snapshot for {GIVE_UP_S:.0f} s")
        await asyncio.sleep(min(manifest.retry_ms, 10_000) / 1000)
    loop = asyncio.get_running_loop()
    try:
        snap = await loop.run_in_executor(worker, verify_manifest, genesis, manifest)
    except ManifestInvalid as exc:
        raise PeerFault(address, f"snapshot manifest: {exc}") from None
    t1 = time.monotonic()
    log.info("state sync: snapshot at height %d from %s: %d chunks, window %d..%d", snap.height, name,
             len(snap.chunks), snap.window_start, snap.height)
    installer = await loop.run_in_executor(worker, _Installer, cfg, genesis, peers, address, snap, worker)
    try:
        blocks = await installer.fetch_window()
        t2 = time.monotonic()
        log.info("state sync: %d window blocks (%.1f MB) in %.1f s", blocks, installer.window_bytes / 1e6, t2 - t1)
        refs = await installer.fetch_state()
        t3 = time.monotonic()
        log.info("state sync: %d entries (%.1f MB) in %.1f s", installer.entries, installer.state_bytes / 1e6,
                 t3 - t2)
        await loop.run_in_executor(worker, installer.finish, refs)
    except BaseException:
        await loop.run_in_executor(worker, installer.close)
        raise
    t4 = time.monotonic()
    return StateSyncReport(snap.height, name, len(snap.chunks), installer.entries, installer.state_bytes, blocks,
                           installer.window_bytes, round(t1 - t0, 3), round(t2 - t1, 3), round(t3 - t2, 3),
                           round(t4 - t3, 3), round(t4 - t0, 3), {k: round(v, 3) for k, v in installer.cpu.items()},
                           0.0)


__all__ = ["StateSyncReport", "is_state_sync_needed", "process_recover_dirs", "run_state_sync"]
