"""The hostile contract library (tests/contracts/hostile_cases.py, every fault class of issue 12) deployed on a real
4-validator network and every function called repeatedly: the chain keeps committing, every node agrees on every
block, receipt and state root, and `verify-ledger` passes on every node afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from qilian.execution.contracts import compute_contract_address
from qilian.sdk.client import Client, build_tx
from qilian.sdk.keys import load_key
from qilian.types.core import compute_tx_hash

from .netutil import audit, make_net, post_batches, wait_committed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contracts"))
from hostile_cases import CASES

CALLS_PER_FUNCTION = 3


def test_hostile_library_on_a_four_validator_network(tmp_path: Path) -> None:
    net = make_net(tmp_path, 4, interval_ms=200)
    net.start_all()
    try:
        admin = load_key(net.root / "keys" / "org1-admin.pem")
        c = Client(net.nodes[0].url, timeout=120)
        tip = net.height(net.nodes[0])
        deployable = [case for case in CASES if case.rule is None]
        deploys = [build_tx(admin, net.chain_id, "contracts", "deploy", [case.name[:64], case.source], tip + 500,
                            nonce=i) for i, case in enumerate(deployable)]
        calls = [build_tx(net.client_key, net.chain_id, compute_contract_address(admin.suite, admin.public_key,
                                                                                 case.name[:64]),
                          "attack", list(case.args), tip + 500, nonce=10_000 + k * 1000 + i)
                 for k in range(CALLS_PER_FUNCTION) for i, case in enumerate(deployable)]
        refused = [case for case in CASES if case.rule is not None]
        rejected = [build_tx(admin, net.chain_id, "contracts", "deploy", [case.name[:64], case.source], tip + 500,
                             nonce=50_000 + i) for i, case in enumerate(refused)]
        with httpx.Client(timeout=60) as http:
            for batch, node in ((deploys + rejected, net.nodes[1]), (calls, net.nodes[2])):
                post_batches(http, node.url, batch)
                wait_committed(http, net.nodes[0].url,
                               {compute_tx_hash(admin.suite, t.body).hex() for t in batch}, 120)
        assert all(n.is_alive() for n in net.nodes), "a validator died of a contract"
        # The chain still commits ordinary work, and every node agrees on all of it.
        after = c.call(net.client_key, "kv", "put", ["after", "hostile"])
        assert after["status"] == "committed"
        net.wait_height(net.nodes, after["height"], 60)
        audit(net, [])
        with httpx.Client(timeout=30) as http:
            for h in range(1, after["height"] + 1):
                seen = {tuple(http.get(f"{n.url}/blocks/{h}/tx_hashes").json()["statuses"]) for n in net.nodes}
                assert len(seen) == 1, f"receipt statuses differ in block {h}"
    finally:
        net.stop_all()
    for node in net.nodes:
        out = subprocess.run([sys.executable, "-m", "qilian.cli.main", "verify-ledger", "--home", str(node.home)],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{node.home.name}: {out.stdout}{out.stderr}"
