"""State sync on real processes (issue 18): a fifth organisation's node joins a running 4-validator network from
a verified snapshot instead of re-executing the chain from genesis, then follows it by block sync and consensus.

Before the snapshot the validator set changes (so the joiner must follow the validator path from the genesis
set) and clients write state. The joiner (``node join --state-sync``, genesis + one seed) must: install a
snapshot whose root is the network's, hold the replay window's blocks (the transactions committed before its
snapshot are "committed" to it, so a replay is refused exactly as its peers refuse it), execute the blocks after
the snapshot to the same state roots, prove state to a light client, and say clearly what it does not hold."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from qilian.bench.join import execute_endorsed, get_height, make_joiner, wait_until
from qilian.crypto import get_suite
from qilian.node.config import init_network, load_config, load_genesis, save_config
from qilian.sdk.client import build_tx
from qilian.sdk.keys import load_key
from qilian.sdk.verify import verify_state_response, verify_validator_path
from qilian.types.core import ChainParams, Transaction, compute_tx_hash

from .conftest import NodeProc
from .netutil import Load, Net, _free_block

pytestmark = pytest.mark.timeout(300)

ORGS = ("org1", "org2", "org3", "org4")
TIMEOUTS = {"propose_base_ms": 800, "propose_delta_ms": 300, "prevote_base_ms": 300, "prevote_delta_ms": 300,
            "precommit_base_ms": 300, "precommit_delta_ms": 300}


def _status(api: str) -> dict[str, object]:
    return dict(httpx.get(api + "/status", timeout=5).json())


def test_a_node_joins_by_state_sync_and_follows_the_chain(tmp_path: Path) -> None:
    api, p2p = _free_block(5), _free_block(5)
    root = tmp_path / "net"
    init_network(root, 4, chain_id="fault-chain", suite_name="ed25519", organisations=ORGS, api_port=api,
                 p2p_port=p2p, params=ChainParams(block_interval_ms=100), timeouts=TIMEOUTS)
    for i in range(4):  # small chunks, so the snapshot travels in many, each proven on its own
        cfg = load_config(root / f"node{i}")
        save_config(replace(cfg, chunk_entries=16))
    nodes = [NodeProc(root / f"node{i}", api + i) for i in range(4)]
    net = Net(root, nodes, load_key(root / "keys" / "org1-client.pem"))
    admins = [load_key(root / "keys" / f"{o}-admin.pem") for o in ORGS]
    genesis = load_genesis(root / "genesis.json")
    url = nodes[0].url
    joiner = make_joiner(tmp_path, "epsilon", "ed25519", root / "genesis.json", f"127.0.0.1:{p2p}", api + 4,
                         p2p + 4, TIMEOUTS, state_sync=True)
    jproc = NodeProc(joiner.home, api + 4)
    load = Load(net, threads=2, max_per_thread=400)
    try:
        net.start_all()
        net.wait_height(nodes, 1, 30)
        load.start()
        # the validator set changes before the snapshot: node0's power 1 → 2 (signs from decided + 2)
        node0 = load_key(nodes[0].home / "keys" / "node0.pem")
        res = execute_endorsed(url, admins[0], admins[1:3], ["validator.update", [[node0.public_key, 2]]])
        changed_at = int(res["height"]) + 2
        execute_endorsed(url, admins[0], admins[1:3], joiner.org_add_action())
        load.wait_acked(60, 90)
        net.wait_height(nodes, changed_at + 3, 30)
        # a transaction committed before the snapshot: the joiner must know it as committed
        with httpx.Client(timeout=10) as http:
            old_tx = build_tx(net.client_key, net.chain_id, "kv", "put", [b"before-snapshot", b"1"],
                              get_height(url) + 900)
            r = http.post(url + "/txs", params={"wait": "commit", "timeout": 20}, content=old_tx.encode(),
                          headers={"content-type": "application/octet-stream"})
            assert r.json()["status"] == "committed", r.text
            old_height = int(r.json()["height"])

        jproc.start(timeout=120)
        st = _status(joiner.api)
        sync = st["state_sync"]
        assert isinstance(sync, dict) and sync["report"] is not None, st
        snap_h = int(sync["snapshot_height"])
        assert snap_h >= old_height and snap_h > changed_at, sync
        assert int(sync["first_block"]) == 1  # the chain is shorter than the window (1,000 blocks): all of it
        report = sync["report"]
        assert report["entries"] > 100 and report["window_blocks"] == snap_h, report
        assert report["chunks"] >= report["entries"] // 16, report

        # it follows: block sync, then consensus; the state roots it computes are the network's
        tip = get_height(url)
        wait_until("the joiner to reach the network's height", lambda: get_height(joiner.api) >= tip + 5, 60)
        top = get_height(joiner.api)
        with httpx.Client(timeout=10) as http:
            for h in range(snap_h, top + 1):
                mine = http.get(f"{joiner.api}/blocks/{h}").json()["header"]
                theirs = http.get(f"{url}/blocks/{h}").json()["header"]
                assert mine["block_id"] == theirs["block_id"] and mine["state_root"] == theirs["state_root"], h
            # a replay of a transaction committed before the snapshot is refused as committed
            r = http.post(joiner.api + "/txs", content=old_tx.encode(),
                          headers={"content-type": "application/octet-stream"})
            assert r.json().get("status") == "committed", r.text
            # its receipt is not on the joiner (never executed there), and it says why
            r = http.get(f"{joiner.api}/txs/{_tx_hash(old_tx)}")
            assert r.status_code == 404 and r.json()["error"] == "not_on_this_node", r.text
            assert "state sync" in r.json()["message"]
            # it proves state to a light client from the genesis set, across the set change
            path = http.get(f"{joiner.api}/gov/validators/path", params={"to": top}).json()
            trusted = verify_validator_path(genesis, path)
            assert any(first == changed_at for first, _ in trusted.spans), trusted.spans
            doc = http.get(f"{joiner.api}/state/kv/before-snapshot").json()
            assert verify_state_response(genesis, doc, trusted) == b"1"
        # the joiner's state root at its tip equals a validator's at that height
        assert int(str(_status(joiner.api)["height"])) >= top
        load.wait_acked(10, 60)
    finally:
        load.stop()
        jproc.stop()
        net.stop_all()


def _tx_hash(tx: Transaction) -> str:
    return compute_tx_hash(get_suite("ed25519"), tx.body).hex()
