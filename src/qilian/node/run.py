"""Run a node process: the HTTP API and the block loop on one event loop until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import uvicorn

from qilian.api.app import create_app
from qilian.node.config import load_config
from qilian.node.node import Node

log = logging.getLogger("qilian.node")


async def serve(home: Path, port: int | None = None, host: str | None = None) -> None:
    """Start the node of ``home`` and serve until a stop signal; blocks are committed durably before a stop."""
    cfg = load_config(home)
    node = Node(cfg)
    app = create_app(node)
    ucfg = uvicorn.Config(
        app,
        host=host or cfg.api_host,
        port=port or cfg.api_port,
        log_level="warning",
        access_log=False,
        limit_concurrency=2048,
        timeout_keep_alive=30,
        ws_max_size=64 * 1024,
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
    block_task = asyncio.create_task(node.run_block_loop(), name="blocks")
    stop_task = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait({api_task, block_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not stop_task and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        node.stop()
        server.should_exit = True
        block_task.cancel()
        for t in (api_task, block_task):
            try:
                await asyncio.wait_for(t, 5)
            except (asyncio.CancelledError, TimeoutError, Exception):
                pass
        node.close()
        log.info("node %s stopped at height %d", cfg.name, tip.height)


def run_node(home: Path, port: int | None = None) -> None:
    """Blocking entry point (uses uvloop when installed)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.run(serve(home, port))
    except ImportError:  # pragma: no cover
        asyncio.run(serve(home, port))
