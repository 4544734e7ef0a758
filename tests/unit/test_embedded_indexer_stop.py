"""Stopping the embedded indexer while a pass runs on its thread (a node shut down mid catch-up).

The node's API closes the index right after ``EmbeddedIndexer.stop``; a pass still writing through the connection
then crashed the process with SIGSEGV inside libsqlite3 (seen on a block-syncing node stopped by SIGTERM). So stop
must return only once no pass runs, and a running pass must end after the write in progress, not finish its
whole catch-up first.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from qilian.bench.chainbuild import ChainBuilder
from qilian.indexer.service import MAX_HEIGHTS_PER_WRITE, EmbeddedIndexer, Indexer
from qilian.indexer.sqlite import SqliteIndex
from qilian.node.config import NodeConfig, init_home
from qilian.node.node import Node
from qilian.sdk.keys import load_key
from qilian.types.core import ChainParams

BLOCKS = 2 * MAX_HEIGHTS_PER_WRITE + 10
"""More heights than two index writes: a catch-up pass that ran to the end would write three times."""


def test_stop_waits_for_the_running_pass_which_ends_after_its_current_write(tmp_path: Path) -> None:
    init_home(tmp_path / "home", chain_id="stop-test", suite_name="ed25519", organisations=("org1",),
              params=ChainParams(block_interval_ms=5))
    node = Node(NodeConfig(home=tmp_path / "home"))
    try:
        builder = ChainBuilder(node)
        client = load_key(tmp_path / "home" / "keys" / "org1-client.pem")
        for _ in range(BLOCKS):
            builder.process_block(builder.make_put_txs(client, 1, 20))
        tip = node.get_tip().height
        index = SqliteIndex(tmp_path / "index.sqlite")
        indexer = Indexer(node.store, node.suite, index)
        # Hold the pass inside its first write (the real write runs once released).
        entered, release = threading.Event(), threading.Event()
        writing = threading.Event()
        real_write = index.process_heights

        def held_write(*args: object, **kwargs: object) -> None:
            writing.set()
            entered.set()
            release.wait(10)
            try:
                real_write(*args, **kwargs)  # type: ignore[arg-type]
            finally:
                writing.clear()

        index.process_heights = held_write  # type: ignore[method-assign]
        embedded = EmbeddedIndexer(indexer)

        async def scenario() -> tuple[bool, bool]:
            embedded.start()
            block, commit = node.store.get_block(tip), node.store.get_commit(tip)
            assert block is not None and commit is not None
            embedded.on_commit(block, commit, [], node.store.get_receipts(tip) or [])  # the node's commit hook
            assert await asyncio.to_thread(entered.wait, 10), "the pass never started"
            stop = asyncio.create_task(embedded.stop())
            await asyncio.sleep(0.3)
            returned_early = stop.done()
            release.set()
            await asyncio.wait_for(stop, 10)
            return returned_early, writing.is_set()

        returned_early, still_writing = asyncio.run(scenario())
        assert not returned_early, "stop returned while a pass was still writing on its thread"
        assert not still_writing
        index.close()  # what the API does next: safe now
        reopened = SqliteIndex(tmp_path / "index.sqlite")
        try:
            # the pass ended after the write it was in (one batch), not after the whole catch-up
            assert reopened.get_last_height() == MAX_HEIGHTS_PER_WRITE < tip
        finally:
            reopened.close()
    finally:
        node.close()
