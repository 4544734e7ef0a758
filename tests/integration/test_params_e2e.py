"""Fuel prices and block limits governed on a real 4-node network (execution/params.py).

``chain.set_params`` (both organisations' admins: MAJORITY of 2) schedules ``block.max_txs = 3`` and a higher
``fuel.write`` for a stated height H. Bursts of transactions before and after H: every node commits the same
blocks, those below H hold more than 3 transactions and none from H on does; a contract call after H is charged the
new write price on every node; ``GET /gov/params`` answers the same on every node, with proofs. A value beyond the
hard bounds is refused through the CLI, naming the bound."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from qilian.bench.join import execute_endorsed, get_height, wait_until
from qilian.contracts import DEFAULT_PRICES
from qilian.execution.contracts import compute_contract_address
from qilian.node.config import load_genesis
from qilian.sdk.client import Client, build_tx
from qilian.sdk.keys import load_key
from qilian.sdk.verify import verify_state_response
from qilian.types.codec import encode
from qilian.types.core import compute_tx_hash

from .netutil import Load, audit, make_net, post_batches

pytestmark = pytest.mark.timeout(240)

STORE = """
store = Hash(default=0)

@export
def put(k: str, v: int):
    store[k] = v
"""


def _burst(net: object, url: str, n: int, tag: str) -> list[str]:
    """n kv.puts in one batch; their hashes once all are committed."""
    key = net.client_key  # type: ignore[attr-defined]
    h = get_height(url)
    txs = [build_tx(key, "fault-chain", "kv", "put", [f"{tag}-{i}", "v"], h + 500) for i in range(n)]
    with httpx.Client(timeout=30) as http:
        post_batches(http, url, txs)
    hashes = [compute_tx_hash(key.suite, t.body).hex() for t in txs]
    wait_until(f"burst {tag} to commit", lambda: all(
        httpx.get(f"{url}/txs/{x}", timeout=5).status_code == 200 for x in hashes[-5:]), 60)
    wait_until(f"all of burst {tag}", lambda: all(
        httpx.get(f"{url}/txs/{x}", timeout=5).status_code == 200 for x in hashes), 60)
    return hashes


def test_block_limits_and_prices_change_at_the_stated_height_on_every_node(tmp_path: Path) -> None:
    net = make_net(tmp_path)
    admin1, admin2 = (load_key(net.root / "keys" / f"org{i}-admin.pem") for i in (1, 2))
    url = net.nodes[0].url
    try:
        net.start_all()
        net.wait_height(net.nodes, 1, 30)
        with Client(url) as c:
            assert c.call(admin1, "contracts", "deploy", ["store", STORE])["receipt"]["status"] == "ok"
        address = compute_contract_address(admin1.suite, admin1.public_key, "store")
        with Client(url) as c:
            before = c.call(net.client_key, address, "put", ["a", 1])["receipt"]["fuel_used"]
        # a burst before the change: blocks of more than 3 transactions
        _burst(net, url, 200, "early")
        effective = get_height(url) + 12
        res = execute_endorsed(url, admin1, [admin2], ["chain.set_params", {
            "block.max_txs": 3, "fuel.write": DEFAULT_PRICES.write + 1000}, effective])
        assert res["receipt"]["result"]["effective_height"] == effective
        docs = [httpx.get(n.url + "/gov/params").json() for n in net.nodes]
        assert all(d["scheduled"] == [{"height": effective, "changes": {"block.max_txs": 3,
                                                                         "fuel.write": DEFAULT_PRICES.write + 1000}}]
                   for d in docs)
        load = Load(net, threads=1)  # blocks are made when there is work: keep some coming until the height
        load.start()
        try:
            net.wait_height(net.nodes, effective, 60)
        finally:
            load.stop()
        # after: the limit holds on every node
        _burst(net, url, 60, "late")
        with Client(url) as c:
            after = c.call(net.client_key, address, "put", ["a", 2])
        assert after["receipt"]["fuel_used"] == before + 1000
        genesis = load_genesis(net.root / "genesis.json")
        for n in net.nodes:
            d = httpx.get(n.url + "/gov/params").json()
            values = {p["name"]: p["value"] for p in d["params"]}
            assert values["block.max_txs"] == 3 and values["fuel.write"] == DEFAULT_PRICES.write + 1000
            assert d["scheduled"] == []
            assert verify_state_response(genesis, d["state"]["block.max_txs"]) == encode(3)
            assert httpx.get(f"{n.url}/txs/{after['hash']}").json()["receipt"]["fuel_used"] == before + 1000

        # beyond the hard bounds: refused, naming the bound (through the CLI)
        env = {"COLUMNS": "250", "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "qilian.cli", *args], capture_output=True, text=True,
                                  timeout=120, env=env, cwd=tmp_path)

        p = cli("gov", "action", "set-params", "block.max_txs=20000", "--out", "p.json")
        assert p.returncode == 0, p.stdout + p.stderr
        p = cli("gov", "endorse", "p.json", "--key", str(net.root / "keys" / "org2-admin.pem"), "--out", "b.json",
                "--node", url)
        assert p.returncode == 0, p.stdout + p.stderr
        p = cli("gov", "execute", "b.json", "--key", str(net.root / "keys" / "org1-admin.pem"), "--node", url)
        out = " ".join((p.stdout + p.stderr).split())
        assert p.returncode != 0 and "block.max_txs" in out and "1..10000 (hard bounds)" in out, out
        tip = min(net.height(n) for n in net.nodes)
    finally:
        net.stop_all()
    # every node committed the same blocks; none from the effective height on holds more than 3 transactions
    for n in net.nodes:
        n.start()
    net.wait_height(net.nodes, tip, 30)
    audit(net, [])
    with httpx.Client(timeout=10) as http:
        counts = {h: int(http.get(f"{url}/blocks/{h}").json()["header"]["tx_count"]) for h in range(1, tip + 1)}
    assert max(c for h, c in counts.items() if h < effective) > 3
    assert max(c for h, c in counts.items() if h >= effective) <= 3
    assert sum(1 for h, c in counts.items() if h >= effective and c == 3) >= 10
    net.stop_all()
