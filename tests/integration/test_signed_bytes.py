"""One block ID, the same stored bytes on every node (Jepsen finding "4c").

Four real SM2 validator processes (SM2 signing is randomised: signing one body twice gives two different valid
signatures). A client signs each of many bodies twice and sends one version to node 0 and the other to node 2 at
the same moment, under background load. Every node's mempool then holds one version or the other, and each
proposer proposes its own; a node holding the other version must fetch the proposed one. After commit, every node
serves identical bytes from ``GET /blocks/{h}`` and ``GET /txs/{hash}``, every inclusion proof verifies against the
asked ID, and ``qilian verify-ledger`` passes on every node's store."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.node.config import load_genesis
from qilian.sdk.verify import verify_tx_response
from qilian.types.core import TxBody, compute_signed_tx_hash, compute_tx_hash, sign_tx

from .netutil import Load, Net, make_net, post_batches, wait_committed

pytestmark = pytest.mark.timeout(300)

PAIRS = 40
"""Bodies signed twice."""


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = make_net(tmp_path, suite="sm2")
    n.start_all()
    try:
        yield n
    finally:
        n.stop_all()


def test_two_signatures_of_one_body_on_two_nodes_store_the_same_bytes_everywhere(net: Net) -> None:
    key = net.client_key
    net.wait_height(net.nodes, 1, 60)
    load = Load(net, threads=2, max_per_thread=60)
    load.start()
    try:
        tip = net.height(net.nodes[0])
        versions_a, versions_b = [], []
        for i in range(PAIRS):
            body = TxBody(net.chain_id, key.public_key, 900_000 + i, tip + 500, "kv", "put", (f"pair{i}", f"v{i}"))
            a, b = sign_tx(key.suite, key.private_key, body), sign_tx(key.suite, key.private_key, body)
            assert a.signature != b.signature, "SM2 signing is randomised: two signatures of one body differ"
            versions_a.append(a)
            versions_b.append(b)
        ids = {compute_tx_hash(key.suite, t.body).hex() for t in versions_a}
        signed = {compute_tx_hash(key.suite, a.body).hex(): {compute_signed_tx_hash(key.suite, a).hex(),
                                                             compute_signed_tx_hash(key.suite, b).hex()}
                  for a, b in zip(versions_a, versions_b, strict=True)}
        # In small batches, both nodes at once: each node's mempool gets its own version first. Spread over
        # several heights, so that proposers of both camps (and in between) propose some of them.
        with httpx.Client(timeout=60) as h0, httpx.Client(timeout=60) as h2:
            for k in range(0, PAIRS, 5):
                t = threading.Thread(target=post_batches, args=(h2, net.nodes[2].url, versions_b[k:k + 5]))
                t.start()
                post_batches(h0, net.nodes[0].url, versions_a[k:k + 5])
                t.join(60)
                time.sleep(0.3)
            wait_committed(h0, net.nodes[0].url, ids, 120)
        load.wait_acked(10, 60)
    finally:
        load.stop()
    top = max(net.height(n) for n in net.nodes)
    net.wait_height(net.nodes, top, 60)

    genesis = load_genesis(net.nodes[0].home / "genesis.json")
    chosen: dict[str, str] = {}
    with httpx.Client(timeout=30) as http:
        for h in range(1, top + 1):
            views = [http.get(f"{n.url}/blocks/{h}").json() for n in net.nodes]
            first = views[0]
            for n, v in zip(net.nodes[1:], views[1:], strict=True):
                assert v["header"]["encoded"] == first["header"]["encoded"], f"block {h}: headers differ"
                assert [t["encoded"] for t in v["txs"]] == [t["encoded"] for t in first["txs"]], \
                    f"block {h}: {n.home.name} stores other transaction bytes than node0 under one block ID"
        for th in sorted(ids):
            docs = [http.get(f"{n.url}/txs/{th}").json() for n in net.nodes]
            assert len({d["tx"]["encoded"] for d in docs}) == 1, f"nodes serve different signatures of {th}"
            assert docs[0]["tx"]["signed_hash"] in signed[th]
            chosen[th] = docs[0]["tx"]["signed_hash"]
            for d in docs:
                assert verify_tx_response(genesis, d, require_receipt=False, tx_hash=bytes.fromhex(th)).tx_hash.hex() \
                    == th
        # No validator equivocated: no evidence is committed (GET /evidence answers, and refuses a bad address).
        for n in net.nodes:
            assert http.get(f"{n.url}/evidence").json()["items"] == []
        bad = http.get(f"{net.nodes[0].url}/evidence", params={"validator": "xyz"})
        assert bad.status_code == 400 and bad.json()["error"] == "bad_address"
    # Both versions were proposed and committed: nodes holding the other one fetched the proposer's.
    from_a = {compute_signed_tx_hash(key.suite, t).hex() for t in versions_a}
    n_a = sum(1 for sh in chosen.values() if sh in from_a)
    assert 0 < n_a < PAIRS, f"{n_a} of {PAIRS} committed versions are node 0's: the test did not mix versions"

    net.stop_all()
    for node in net.nodes:
        out = subprocess.run([sys.executable, "-m", "qilian.cli.main", "verify-ledger", "--home", str(node.home)],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{node.home.name}: {out.stdout}{out.stderr}"
