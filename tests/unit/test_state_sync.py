"""State sync in one process: the real snapshot server over a real chain store, the real joiner logic, with the
network replaced by direct calls — so a hostile peer can forge any answer.

* An honest snapshot installs a store whose root, flat values and tree are the server's, holding the window's
  blocks and transaction index; the joined node then executes the server's next blocks to the same roots.
* A forged chunk, a forged manifest and a forged window block are each refused with their reason, the peer is
  penalised, and the sync completes from another peer.
* A crash mid-sync leaves a staging directory that the next start removes (or, once complete, swaps in).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from qilian.api.errors import ApiError
from qilian.api.readside import ReadSide
from qilian.bench.chainbuild import ChainBuilder
from qilian.execution.block import compute_tx_hashes
from qilian.node.config import NodeConfig, init_home
from qilian.node.ledger import verify_ledger
from qilian.node.node import Node
from qilian.node.snapshots import SnapshotServer, describe_missing, get_state_sync_record
from qilian.node.statesync import (
    COMPLETE_MARK,
    _Peers,
    _SortedRuns,
    get_staging_path,
    process_recover_dirs,
    process_sync_loop,
)
from qilian.p2p.messages import (
    MAX_FRAME_BYTES,
    Blocks,
    BlockWithCommit,
    Chunk,
    GetBlocks,
    GetChunk,
    GetSnapshot,
    SnapshotManifest,
)
from qilian.sdk.keys import load_key
from qilian.state import StateTree
from qilian.storage.store import ChainStore, split_value_key
from qilian.types.core import Block, ChainParams, Commit
from qilian.types.struct import Wire

CHAIN = "sync-chain"
BLOCKS = 24
TXS = 30

Tamper = Callable[[Any], Any]


class FakePeers(_Peers):
    """Peers answered in-process by snapshot servers (an address per entry; several may share one node)."""

    def __init__(self, servers: dict[bytes, tuple[SnapshotServer, Node, Tamper | None]],
                 on_retry: Callable[[], None]):
        super().__init__()
        self.servers = servers
        self.on_retry = on_retry
        self.punished: list[tuple[bytes, str]] = []

    def get_candidates(self) -> list[bytes]:
        return [a for a in self.servers if a not in self.banned]

    async def wait_peer(self, timeout_s: float) -> bytes | None:
        c = self.get_candidates()
        return c[0] if c else None

    async def request(self, address: bytes, msg: Wire, key: tuple[Any, ...]) -> Any:
        server, node, tamper = self.servers[address]
        ans: Any
        if isinstance(msg, GetSnapshot):
            ans = await server.on_get_snapshot(msg)
            if not ans.height:
                await asyncio.sleep(0.2)  # the session is being built
                self.on_retry()
                ans = replace(ans, retry_ms=1) if ans.retry_ms else ans
        elif isinstance(msg, GetChunk):
            ans = await server.on_get_chunk(msg)
        elif isinstance(msg, GetBlocks):
            items: list[BlockWithCommit] = []
            size = 0
            for h in range(msg.start, min(msg.start + msg.count, node.get_tip().height + 1)):
                raw, commit = node.store.get_block_bytes(h), node.store.get_commit(h)
                assert raw is not None and commit is not None
                size += len(raw) + 1024
                if items and size > MAX_FRAME_BYTES - 64 * 1024:  # as BlockSyncReactor.on_get_blocks
                    break
                items.append(BlockWithCommit(raw, commit.encode()))
            ans = Blocks(tuple(items))
        else:
            raise AssertionError(msg)
        return tamper(ans) if tamper is not None else ans

    def punish(self, address: bytes, reason: str) -> None:
        self.banned.add(address)
        self.punished.append((address, reason))

    def get_name(self, address: bytes) -> str:
        return address[:1].decode()


@pytest.fixture()
def chain(tmp_path: Path) -> Iterator[tuple[Node, ChainBuilder, Path]]:
    init_home(tmp_path / "server", chain_id=CHAIN, suite_name="ed25519", organisations=("org1",),
              params=ChainParams(block_interval_ms=5))
    joiner = tmp_path / "joiner"
    joiner.mkdir()
    for name in ("genesis.json", "node.toml"):
        shutil.copy(tmp_path / "server" / name, joiner / name)
    shutil.copytree(tmp_path / "server" / "keys", joiner / "keys")
    node = Node(NodeConfig(home=tmp_path / "server"))
    builder = ChainBuilder(node)
    client = load_key(tmp_path / "server" / "keys" / "org1-client.pem")
    for _ in range(BLOCKS):
        builder.process_block(builder.make_put_txs(client, TXS, 60))
    try:
        yield node, builder, joiner
    finally:
        node.close()


def _run(node: Node, builder: ChainBuilder, joiner: Path,
         tampers: dict[bytes, Tamper | None], engine: str = "") -> tuple[Any, FakePeers]:
    server = SnapshotServer(node, chunk_entries=64)
    client = load_key(node.config.home / "keys" / "org1-client.pem")

    def on_retry() -> None:
        builder.process_block(builder.make_put_txs(client, 3, 60))

    peers = FakePeers({a: (server, node, t) for a, t in tampers.items()}, on_retry)
    worker = ThreadPoolExecutor(1)
    try:
        report = asyncio.run(process_sync_loop(NodeConfig(home=joiner, store_engine=engine), node.genesis, peers,
                                               worker))
    finally:
        worker.shutdown()
        server.close()
    return report, peers


def _forge_chunk(ans: Any) -> Any:
    if isinstance(ans, Chunk) and ans.index == 1 and ans.entries:
        ns, k, v = ans.entries[0]
        return replace(ans, entries=((ns, k, v[:-1] + b"?"), *ans.entries[1:]))
    return ans


def _forge_manifest(ans: Any) -> Any:
    if isinstance(ans, SnapshotManifest) and ans.height:
        specs = list(ans.chunks)
        specs[0] = replace(specs[0], subtree_hash=b"\x07" * 32, count=max(1, specs[0].count))
        return replace(ans, chunks=tuple(specs))
    return ans


def _forge_block(ans: Any) -> Any:
    if isinstance(ans, Blocks) and ans.items:
        item = ans.items[-1]
        block = Block.decode(item.block)
        forged = Block(block.header, (*block.txs[:-1], block.txs[0]), block.last_commit, block.evidence)
        return Blocks((*ans.items[:-1], BlockWithCommit(forged.encode(), item.commit)))
    return ans


@pytest.mark.parametrize("engine", ["lmdb", "rocksdb"])
def test_honest_snapshot_installs_the_servers_state_and_the_node_follows(
        chain: tuple[Node, ChainBuilder, Path], engine: str) -> None:
    node, builder, joiner = chain
    report, peers = _run(node, builder, joiner, {b"B" * 20: None}, engine)
    assert report is not None and not peers.punished
    assert report.chunks > 4 and report.window_blocks == report.height
    h = report.height
    store = ChainStore(joiner / "data", readonly=True)
    try:
        tip = store.get_tip()
        server_block = node.store.get_block(h + 1)
        assert server_block is not None
        assert tip.height == h and tip.state_root == server_block.header.state_root
        assert tip.block_id == server_block.header.prev_block_id
        # flat values and the tree agree with each other and with the server's tree at that root
        values = dict(store.iter_state_values())
        assert len(values) == report.entries
        tree, server_tree = StateTree(node.suite.hash, store), StateTree(node.suite.hash, node.store)
        assert tree.check_tree(tip.state_root) == len(values)
        for fk, v in list(values.items())[:200]:
            ns, k = split_value_key(fk)
            assert server_tree.get_value(tip.state_root, ns, k) == v
        # the window's transactions are committed to it; no receipts below the snapshot
        for height in (1, h):
            blk = node.store.get_block(height)
            assert blk is not None
            assert store.get_block_bytes(height) == blk.encode()
            assert store.get_receipts(height) is None
            assert blk.txs and all(store.is_tx_committed(th) for th in compute_tx_hashes(node.suite, blk.txs))
        record = get_state_sync_record(store)
        assert record is not None and record.height == h and record.window_start == 1
        # what it lacks by design, the API says: a block below the window, receipts up to H, old states
        reads = ReadSide(store, node.suite, node.genesis)
        with pytest.raises(ApiError) as err:
            reads.get_state("kv", b"k1", h)
        assert err.value.status == 404 and err.value.code == "not_on_this_node"
        assert f"state sync with the state after block {h}" in err.value.message
        longer = replace(record, window_start=5)  # as if the chain were longer than the window
        assert "holds blocks from 5" in (describe_missing(longer, 3, "block") or "")
        assert describe_missing(longer, 5, "block") is None and describe_missing(None, 3, "block") is None
        assert "never executed" in (describe_missing(longer, h, "receipts") or "")
    finally:
        store.close()
    # the joined node executes the server's next blocks to the same roots
    joined = Node(NodeConfig(home=joiner, store_engine=engine))
    try:
        assert joined.valsets.get(h) == node.genesis.validators
        for height in range(h + 1, node.get_tip().height + 1):
            blk, commit = node.store.get_block(height), node.store.get_commit(height)
            assert blk is not None and commit is not None
            joined.process_apply_block(blk, commit, compute_tx_hashes(node.suite, blk.txs))
        assert joined.get_tip() == node.get_tip()
    finally:
        joined.close()
    # verify-ledger checks a state-synced store from its snapshot, trusting only genesis
    report_ok = verify_ledger(joiner / "data")
    assert report_ok.ok and report_ok.checked == node.get_tip().height - h, report_ok.reason
    store = ChainStore(joiner / "data")
    try:
        fk, _ = next(iter(store.iter_state_values()))
        store.kv.write([(b"v", fk, b"edited by hand")])
    finally:
        store.close()
    report_bad = verify_ledger(joiner / "data")
    assert not report_bad.ok and "differs from the tree" in report_bad.reason, report_bad


@pytest.mark.parametrize(("forge", "reason"), [
    (_forge_chunk, "chunk 1 of the snapshot"),
    (_forge_manifest, "snapshot manifest: chunk list"),
    (_forge_block, "transactions do not match"),
], ids=["chunk", "manifest", "window-block"])
def test_a_forgery_is_refused_the_peer_penalised_and_the_sync_completes_from_another(
        chain: tuple[Node, ChainBuilder, Path], forge: Tamper, reason: str) -> None:
    node, builder, joiner = chain
    report, peers = _run(node, builder, joiner, {b"A" * 20: forge, b"B" * 20: None})
    assert [a for a, _ in peers.punished] == [b"A" * 20], peers.punished
    assert reason in peers.punished[0][1], peers.punished
    assert report is not None and report.peer == "B"
    store = ChainStore(joiner / "data", readonly=True)
    try:
        assert store.get_tip().height == report.height
    finally:
        store.close()


def test_an_interrupted_sync_restarts_and_a_completed_one_is_swapped_in(tmp_path: Path) -> None:
    cfg = NodeConfig(home=tmp_path)
    staging = get_staging_path(cfg)
    (staging / "junk").mkdir(parents=True)
    cfg.data_path.mkdir()
    (cfg.data_path / "genesis-only").write_text("x")
    process_recover_dirs(cfg)
    assert not staging.exists() and (cfg.data_path / "genesis-only").exists()  # incomplete: dropped
    staging.mkdir()
    (staging / "synced").write_text("y")
    (staging / COMPLETE_MARK).write_text("complete")
    process_recover_dirs(cfg)  # complete: the crash hit between the marker and the swap
    assert not staging.exists() and (cfg.data_path / "synced").exists()
    assert not (cfg.data_path / "genesis-only").exists() and not (cfg.data_path / COMPLETE_MARK).exists()


@pytest.mark.parametrize("engine", ["lmdb", "rocksdb"])
def test_window_batches_sharing_a_hash_map_prefix_keep_every_location(tmp_path: Path, engine: str) -> None:
    """The window arrives in batches, newest first, and the hash map is keyed by an 8-byte prefix of the hash: two
    transactions of different batches that share a prefix must both stay findable (a replay of either refused).
    RocksDB installs each batch as it comes and joins it with what the map holds; LMDB's merge joins the runs."""
    store = ChainStore(tmp_path / "staging", engine=engine, durable=False)
    try:
        runs = _SortedRuns(tmp_path / "runs", direct=store if store.kv.is_bulk_load_order_free else None)
        a, b, c = b"\x01" * 8 + b"\xaa" * 24, b"\x01" * 8 + b"\xbb" * 24, b"\x02" * 32
        for batch in ([(9, [c, a])], [(3, [b])]):  # heights 9, then 3
            store.process_install_blocks([(h, b"", Commit(h, 0, b"\x00" * 32, ()), hashes, []) for h, hashes in batch])
            runs.add_txmap(ChainStore.compute_install_txmap(batch))
        runs.process_merge(store)
        assert [store.get_tx_location(x) for x in (a, b, c)] == [(9, 1), (3, 0), (9, 0)]
        assert store.get_committed([a, b, c, b"\x01" * 8 + b"\xcc" * 24]) == {a, b, c}
    finally:
        store.close()
