"""Run a node process: the HTTP API, the P2P transport and consensus on one event loop until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import uvicorn

from qilian.api.app import create_app
from qilian.api.protocol import get_protocol_class
from qilian.consensus.timeouts import TimeoutConfig
from qilian.execution.nodes import EndpointError, compute_endpoint
from qilian.node.config import NodeConfig, load_config
from qilian.node.consensus import ConsensusDriver
from qilian.node.gcstats import get_gc_timer, process_configure_node_gc
from qilian.node.node import Node
from qilian.node.snapshots import SnapshotServer
from qilian.node.statesync import is_state_sync_needed, process_recover_dirs, run_state_sync
from qilian.p2p.transport import PeerSpec, Transport

log = logging.getLogger("qilian.node")


async def serve(home: Path, port: int | None = None, host: str | None = None) -> None:
    """Start the node of ``home`` and serve until a stop signal; blocks are committed durably before a stop."""
    cfg = load_config(home)
    process_recover_dirs(cfg)
    report = None
    if is_state_sync_needed(cfg):
        log.info("node %s: joining by state sync", cfg.name)
        report = await run_state_sync(cfg)
    node = Node(cfg)
    node.state_sync_report = report.to_doc() if report is not None else None
    driver = make_driver(cfg, node)
    app = create_app(node)
    process_configure_node_gc()  # after start-up: what it loaded is kept for the process's life
    ucfg = uvicorn.Config(
        app,
        host=host or cfg.api_host,
        port=port or cfg.api_port,
        log_level="warning",
        access_log=False,
        limit_concurrency=2048,
        timeout_keep_alive=30,
        ws_max_size=64 * 1024,
        http=get_protocol_class(),
    )
    server = uvicorn.Server(ucfg)
    # The node owns SIGINT/SIGTERM (below) so that a stop always ends the block loop first; uvicorn's own
    # capture would re-raise the signal after serving and could kill the process mid-shutdown.
    setattr(server, "capture_signals", contextlib.nullcontext)  # noqa: B010
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tip = node.get_tip()
    log.info("node %s: chain %s (%s) at height %d, API on http://%s:%d", cfg.name, node.genesis.chain_id,
             node.suite.name, tip.height, ucfg.host, ucfg.port)
    api_task = asyncio.create_task(server.serve(), name="api")
    if driver.transport is not None:
        log.info("P2P on %s:%d: %d nodes to dial, %d seed(s)", cfg.p2p_host, cfg.p2p_port,
                 len(driver.transport.targets), len(driver.transport.seeds))
    block_task = asyncio.create_task(driver.run(), name="consensus")
    stop_task = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait({api_task, block_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not stop_task and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        driver.stop()
        server.should_exit = True
        block_task.cancel()
        for t in (api_task, block_task):
            try:
                await asyncio.wait_for(t, 5)
            except (asyncio.CancelledError, TimeoutError, Exception):
                pass
        if driver.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(driver.transport.stop(), 5)
        if driver.snapshots is not None:
            driver.snapshots.close()
        driver.close()
        node.close()
        log.info("node %s stopped", cfg.name)


def make_driver(cfg: NodeConfig, node: Node) -> ConsensusDriver:
    """Consensus for this node: over TLS to the nodes chain state registers (dialing their registered endpoints,
    the address book and the seeds), or alone when it has no P2P port."""
    timeouts = TimeoutConfig(**cfg.timeouts) if cfg.timeouts else TimeoutConfig()
    transport: Transport | None = None
    driver: ConsensusDriver
    if cfg.p2p_port:
        book = []
        for p in cfg.peers:
            pub = bytes.fromhex(p["public_key"])
            book.append(PeerSpec(p["name"], pub, node.suite.compute_address(pub), p["host"], int(p["port"])))
        seeds = []
        for text in cfg.seeds:
            try:
                seeds.append(compute_endpoint(text))
            except EndpointError as exc:
                raise ValueError(f"{cfg.home}/node.toml: [p2p] seeds: {exc}") from None

        def admit(public_key: bytes) -> str | None:
            reg = node.get_registered_node(public_key)
            return reg.label if reg is not None else None

        transport = Transport(
            suite=node.suite, private_key=node.key.private_key, public_key=node.key.public_key,
            chain_id=node.genesis.chain_id, genesis_hash=node.genesis_hash, peers=book, seeds=tuple(seeds),
            listen_host=cfg.p2p_host, listen_port=cfg.p2p_port, tls_dir=cfg.tls_dir,
            on_message=lambda peer, msg: driver.on_message(peer, msg),
            on_peer_up=lambda peer: driver.on_peer_up(peer),
            get_height=lambda: node.get_tip().height, admit=admit, blocked=frozenset(cfg.blocked_peers))

        def on_nodes_changed() -> None:
            assert transport is not None
            transport.set_targets(get_peer_targets(node))
            transport.process_admission()

        transport.set_targets(get_peer_targets(node))
        node.on_nodes_changed = on_nodes_changed
    driver = ConsensusDriver(node, transport, timeouts, cfg.wal_path, cfg.signer_state_path)
    if transport is not None:
        driver.snapshots = SnapshotServer(node, cfg.serve_snapshots, cfg.chunk_entries)
    node.on_tx_admitted = driver.on_tx_admitted
    node.consensus = driver
    return driver


def get_peer_targets(node: Node) -> list[PeerSpec]:
    """The registered nodes of the node's committed state that have an endpoint, as P2P dial targets."""
    out = []
    for reg in node.get_registered_nodes():
        if reg.endpoint:
            host, port = compute_endpoint(reg.endpoint)
            out.append(PeerSpec(reg.label, reg.public_key, node.suite.compute_address(reg.public_key), host, port))
    return out


LOCK_FILE = "node.lock"
"""Held (flock) by the one process serving a home, for its whole life; the kernel drops it when the process dies."""


class HomeInUse(RuntimeError):
    """Another process already runs the node of this home."""


def acquire_home_lock(home: Path) -> int:
    """Lock ``home`` for this process, or raise HomeInUse naming the holder. Two processes on one home would
    write one database and one WAL and sign with one key: never allowed."""
    import fcntl

    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise HomeInUse(f"{home} is already served by another node process (pid {holder}); stop it first "
                        f"(`qilian down`, or kill {holder})") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def run_node(home: Path, port: int | None = None) -> None:
    """Blocking entry point (uses uvloop when installed). Holds the home lock while it runs."""
    lock_fd = acquire_home_lock(home)
    get_gc_timer()  # count every collection from the start (qilian_gc_seconds in /metrics)
    level = os.environ.get("QILIAN_LOG", "info").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.run(serve(home, port))
    except ImportError:  # pragma: no cover
        asyncio.run(serve(home, port))
    finally:
        os.close(lock_fd)
