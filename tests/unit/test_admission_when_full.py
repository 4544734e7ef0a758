"""A client's batch meets a full mempool: what does not fit is refused before it is decoded, checked or verified.

Why it matters: under a sustained overload every client retries its batch until there is room; when each retry was
decoded, rule-checked and signature-verified only to be refused, that work was taken from committing blocks. A real
Node over a real home, no consensus running."""

from __future__ import annotations

import asyncio
from pathlib import Path

from qilian.node.config import NodeConfig, init_home
from qilian.node.node import Node
from qilian.sdk.client import build_tx
from qilian.sdk.keys import load_key


def _start(tmp_path: Path, max_txs: int, n_txs: int) -> tuple[Node, list[bytes]]:
    """A node whose mempool holds ``max_txs``, and ``n_txs`` signed client transactions for it."""
    home = tmp_path / "home"
    init_home(home, chain_id="full-chain", suite_name="ed25519", organisations=("org1",))
    node = Node(NodeConfig(home=home, mempool_max_txs=max_txs))
    key = load_key(home / "keys" / "org1-client.pem")
    return node, [build_tx(key, "full-chain", "kv", "put", [f"k{i}", "v"], 100).encode() for i in range(n_txs)]


def test_what_does_not_fit_is_refused_unexamined(tmp_path: Path) -> None:
    node, txs = _start(tmp_path, 3, 5)
    try:
        garbage = b"\xff not a transaction"

        async def scenario() -> list[tuple[list[str], int | None]]:
            out = []
            # Room for 3: the first two fit, the garbage is examined (and refused as malformed); the rest are not
            # tried, so garbage beyond the room is not even decoded.
            res = await node.process_submit_batch([txs[0], txs[1], garbage, txs[2], garbage])
            out.append(([r[1] for r in res.results], res.full_at))
            res = await node.process_submit_batch([txs[2], txs[3]])  # room for 1 now
            out.append(([r[1] for r in res.results], res.full_at))
            res = await node.process_submit_batch([garbage, txs[4]])  # full: nothing examined
            out.append(([r[1] for r in res.results], res.full_at))
            return out

        assert asyncio.run(scenario()) == [
            (["accepted", "accepted", "malformed", "mempool_full", "mempool_full"], 3),
            (["accepted", "mempool_full"], 1),
            (["mempool_full", "mempool_full"], 0),
        ]
        assert len(node.mempool) == 3
    finally:
        node.close()


def test_a_full_mempool_answers_429_over_http(tmp_path: Path) -> None:
    """The API's batch endpoint: 429 with ``mempool_full_at`` 0 when nothing fits, so a client backs off."""
    from fastapi.testclient import TestClient

    from qilian.api.app import create_app
    from qilian.types.codec import encode_trusted

    node, txs = _start(tmp_path, 1, 2)
    try:
        with TestClient(create_app(node)) as http:
            first = http.post("/txs/batch", content=encode_trusted([txs[0]]),
                              headers={"content-type": "application/octet-stream"})
            assert first.status_code == 200 and first.json()["accepted"] == 1
            second = http.post("/txs/batch", content=encode_trusted([txs[1]]),
                               headers={"content-type": "application/octet-stream"})
            assert second.status_code == 429
            assert second.json()["mempool_full_at"] == 0
            assert second.json()["rejected"][0]["error"] == "mempool_full"
    finally:
        node.close()
