"""A real node with ``[store] keep_states`` (issue 18): heights older than its window are refused with 410
``state_pruned`` naming the oldest height it proves — through the API, the SDK and the CLI — while recent proofs
still verify, and ``/metrics`` shows the pruner's work.

The floor is 1,001 states, so the chain needs more than 1,001 blocks that change state. They are built in-process
first, through the node's own commit path (``Node.process_apply_block`` — execution, the state tree, the store
batch and the pruning after it — with real signed commits, so the node process then continues the chain on top of
them); then the node process starts on that home and commits more blocks under consensus."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qilian.execution.block import compute_signed_tx_hashes, make_header
from qilian.node.config import load_config, save_config
from qilian.node.node import Node
from qilian.node.pruning import MIN_KEEP_STATES
from qilian.sdk.client import Client, StatePruned, build_tx
from qilian.sdk.keys import load_key
from qilian.sdk.verify import verify_state_response
from qilian.types.core import (
    PRECOMMIT,
    Block,
    Commit,
    CommitSig,
    compute_block_id,
    compute_tx_hash,
    compute_vote_sign_bytes,
)

from .conftest import make_chain

pytestmark = pytest.mark.timeout(300)

BLOCKS = MIN_KEEP_STATES + 60
"""Blocks built before the node process starts: the first 60 or so states fall out of the window."""


def _build_blocks(home: Path, count: int) -> None:
    """``count`` blocks of one ``kv.put`` each, decided by the single validator (a real precommit signature)."""
    node = Node(load_config(home))
    try:
        client_key = load_key(home / "keys" / "org1-client.pem")
        last: Commit | None = None
        for _ in range(count):
            tip = node.get_tip()
            parent = node.get_parent_info(tip)
            h = tip.height + 1
            tx = build_tx(client_key, node.genesis.chain_id, "kv", "put", ["counter", str(h)], h + 10, nonce=h)
            header = make_header(node.rules, parent, parent.time_ms + 1, compute_signed_tx_hashes(node.suite, [tx]),
                                 last, node.key.address)
            block_id = compute_block_id(node.suite, header)
            sig = node.suite.sign(node.key.private_key,
                                  compute_vote_sign_bytes(node.genesis.chain_id, PRECOMMIT, h, 0, block_id))
            commit = Commit(h, 0, block_id, (CommitSig(node.key.address, sig),))
            node.process_apply_block(Block(header, (tx,), last), commit, [compute_tx_hash(node.suite, tx.body)])
            last = commit
        assert node.pruned_nodes > 0
    finally:
        node.close()


def test_a_pruning_node_refuses_old_heights_and_proves_recent_ones(tmp_path: Path) -> None:
    chain = make_chain(tmp_path, interval_ms=50)
    cfg = load_config(chain.home)
    save_config(type(cfg)(**{**cfg.__dict__, "store_keep_states": MIN_KEEP_STATES}))
    assert load_config(chain.home).store_keep_states == MIN_KEEP_STATES
    _build_blocks(chain.home, BLOCKS)

    chain.node.start()
    try:
        c = Client(chain.node.url)
        # A block under consensus on top of the prebuilt ones (its commit, its pruning).
        res = c.call(chain.client_key, "kv", "put", ["after", "restart"])
        assert res["height"] > BLOCKS
        status = c.get_status()
        while True:  # the next block commits that block's results; then the chain rests (no empty blocks)
            time.sleep(1.0)
            again = c.get_status()
            if again["height"] == status["height"]:
                break
            status = again
        tip = status["height"]
        oldest = tip - MIN_KEEP_STATES + 2  # header h commits version h - 1; versions tip-1000 … tip are kept
        assert status["keep_states"] == MIN_KEEP_STATES and status["oldest_state_height"] == oldest

        # Old heights: 410 with the oldest height, through the API and the SDK.
        r = httpx.get(f"{chain.node.url}/state/kv/counter", params={"height": 5}, timeout=10)
        assert r.status_code == 410, r.text
        body = r.json()
        assert body["error"] == "state_pruned" and body["oldest_height"] == oldest
        assert f"oldest height it proves is {oldest}" in body["message"] and "archive node" in body["message"]
        with pytest.raises(StatePruned) as caught:
            c.get_state("kv", b"counter", oldest - 1)
        assert caught.value.oldest_height == oldest

        # Recent heights still prove, and the proofs verify against the header and its commit.
        for height in (oldest, oldest + 1, tip - 1, None):
            doc = c.get_state("kv", b"counter", height)
            value = verify_state_response(chain.genesis, doc)
            assert value == str(min(doc["header"]["height"] - 1, BLOCKS)).encode(), (height, value)

        # The CLI surfaces the node's message.
        out = subprocess.run([sys.executable, "-m", "qilian.cli.main", "state", "get", "kv", "counter", "--height",
                              "5", "--node", chain.node.url, "--home", str(chain.home)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "state_pruned" in out.stderr and f"is {oldest}" in out.stderr, out.stderr

        # The pruner ran after the consensus block (queued behind it on the execution thread).
        deadline = time.monotonic() + 20
        while True:
            metrics = httpx.get(f"{chain.node.url}/metrics", timeout=10).text
            values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                      if line.startswith(("qilian_store_pruned_nodes_total ", "qilian_state_oldest_height "))}
            if values.get("qilian_store_pruned_nodes_total", 0) > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert values["qilian_store_pruned_nodes_total"] > 0, metrics[:3000]
        assert values["qilian_state_oldest_height"] >= oldest

        # Offline: `qilian node prune` refuses while the node runs, then prunes and compacts once it is stopped;
        # the node starts again on the compacted store and still proves its recent heights.
        def prune() -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "qilian.cli.main", "node", "prune", "--home",
                                   str(chain.home), "--compact"], capture_output=True, text=True, timeout=120)

        busy = prune()
        assert busy.returncode != 0 and "already served" in busy.stderr, busy.stdout + busy.stderr
        chain.node.stop()
        done = prune()
        assert done.returncode == 0 and "pruned" in done.stdout and "MiB →" in done.stdout, done.stdout + done.stderr
        chain.node.start()
        doc = c.get_state("kv", b"counter", oldest)
        assert verify_state_response(chain.genesis, doc) == str(oldest - 1).encode()
    finally:
        chain.node.stop()
