"""G2 and G5: validator-set changes on a real five-node network under load.

G2 — a fifth node, not in the genesis set, follows the chain from genesis as an observer and catches up; it is
voted in (`qilian validator add --candidate … --propose` + a vote); the set changes exactly two blocks after the
deciding one (headers' validators_hash) with no height skipped, and the new validator signs commits; then one
of the five is killed and the chain keeps committing; then an original validator is removed by vote and the
chain keeps committing.
G5 — the killed node, its data wiped, syncs from genesis across both changes (each commit checked with the set
of its height); the light client verifies a recent transaction offline from genesis through the validator path;
a path with one corrupted commit signature is refused with a clear error; verify-ledger passes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qilian.node.config import load_genesis
from qilian.sdk.keys import load_key
from qilian.sdk.verify import ProofInvalid, verify_state_response, verify_tx_response, verify_validator_path
from qilian.types.core import ValidatorSet
from qilian.types.genesis_json import genesis_to_json

from .netutil import Load, audit, make_net

pytestmark = pytest.mark.timeout(420)


def _cli(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"COLUMNS": "250", "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "qilian.cli", *args], capture_output=True, text=True, timeout=120,
                       env=env, cwd=cwd)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def _out(p: subprocess.CompletedProcess[str]) -> str:
    return " ".join((p.stdout + p.stderr).split())


def _wait(what: str, cond: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_g2_g5_validator_set_changes_under_load(tmp_path: Path) -> None:
    net = make_net(tmp_path, n=5)
    # node4 is a member of org1 with the validator role, but not in the genesis validator set: an observer
    genesis = load_genesis(net.root / "genesis.json")
    node4 = load_key(net.nodes[4].home / "keys" / "node4.pem", None)
    genesis = dataclasses.replace(genesis, validators=ValidatorSet(tuple(
        v for v in genesis.validators.validators if v.public_key != node4.public_key)))
    text = genesis_to_json(genesis)
    for path in [net.root / "genesis.json", *(n.home / "genesis.json" for n in net.nodes)]:
        path.write_text(text)
    admin1, admin2 = str(net.root / "keys" / "org1-admin.pem"), str(net.root / "keys" / "org2-admin.pem")
    url = net.nodes[2].url
    load = Load(net, threads=2)
    try:
        for n in net.nodes[:4]:
            n.start()
        load.start()
        load.wait_acked(20, 60)
        # the observer starts from genesis later and catches up without voting
        net.nodes[4].start()
        tip = net.height(net.nodes[0])
        net.wait_height([net.nodes[4]], tip, 60)
        p = _cli(net.root, "validator", "add", str(net.nodes[4].home / "keys" / "node4.pem"), "--candidate",
                 "http://127.0.0.1:1", "--out", "v.json", "--node", url, check=False)
        assert p.returncode != 0 and "not caught up" in _out(p) and "does not answer" in _out(p)
        p = _cli(net.root, "validator", "add", str(net.nodes[4].home / "keys" / "node4.pem"), "--candidate",
                 net.nodes[4].url, "--wait", "30", "--out", "v.json", "--propose", "--key", admin1, "--node", url)
        assert "pending" in _out(p)
        p = _cli(net.root, "gov", "vote", "1", "yes", "--key", admin2, "--node", url)
        assert "proposal 1: executed" in _out(p)
        decided = int(httpx.get(url + "/gov/proposals/1").json()["proposal"]["decided"])
        net.wait_height(net.nodes[:5], decided + 4, 60)
        headers = {h: httpx.get(f"{url}/blocks/{h}").json()["header"] for h in range(decided, decided + 4)}
        old, new = headers[decided]["validators_hash"], headers[decided + 2]["validators_hash"]
        assert headers[decided + 1]["validators_hash"] == old != new  # H+1 still the old set; H+2 the new one
        assert headers[decided + 1]["next_validators_hash"] == new
        assert httpx.get(url + "/gov/validators").json()["current"]["total_power"] == 5
        node4_addr = node4.address.hex()
        dashboard = httpx.get(url + "/validators").json()  # the explorer's list follows chain state, not genesis
        assert dashboard["total_power"] == 5 and node4_addr in {v["address"] for v in dashboard["validators"]}

        def node4_signed() -> bool:
            top = net.height(net.nodes[0])
            return any(node4_addr in {s["validator"] for s in
                                      (httpx.get(f"{url}/blocks/{h}").json().get("commit") or {}).get("signatures",
                                                                                                      [])}
                       for h in range(decided + 2, top + 1))
        _wait("the new validator to sign a commit", node4_signed, 60)

        # one of the five dies: 4 of 5 power remain, the chain keeps committing
        net.nodes[0].kill()
        live = net.nodes[1:]
        h0 = net.height(live[0])
        net.wait_height(live, h0 + 5, 60)

        # an original validator is removed by vote; the chain keeps committing (3 of the remaining 4 are up)
        node1 = net.nodes[1].home / "keys" / "node1.pem"
        p = _cli(net.root, "validator", "remove", str(node1), "--out", "r.json", "--propose", "--key", admin1,
                 "--node", url)
        assert "pending" in _out(p)
        p = _cli(net.root, "gov", "vote", "2", "yes", "--key", admin2, "--node", url)
        assert "proposal 2: executed" in _out(p)
        decided2 = int(httpx.get(url + "/gov/proposals/2").json()["proposal"]["decided"])
        net.wait_height(live, decided2 + 6, 60)
        assert httpx.get(url + "/gov/validators").json()["current"]["total_power"] == 4

        # G5: the dead node, wiped, syncs from genesis across both changes
        net.wipe(0)
        net.nodes[0].start()
        net.wait_height([net.nodes[0]], decided2 + 6, 90)
        load.wait_acked(10, 60)
    finally:
        load.stop()
    audit(net, load.acked)

    # the light client: a recent transaction verified offline from genesis through the validator path
    tip = net.height(net.nodes[2])
    path = httpx.get(f"{url}/gov/validators/path", params={"to": tip}).json()
    assert len(path["entries"]) == 2
    trusted = verify_validator_path(genesis, path)
    assert [s[0] for s in trusted.spans] == [1, decided + 2, decided2 + 2]
    recent = load.acked[-1]
    resp = httpx.get(f"{url}/txs/{recent}").json()
    v = verify_tx_response(genesis, resp, require_receipt=False, trusted=trusted)
    assert v.height > decided2 + 2
    # the answer carries the path it needs: a verifier holding only genesis checks it as it is
    assert len(resp["validator_path"]["entries"]) == 2
    assert verify_tx_response(genesis, resp, require_receipt=False).tx_hash == v.tx_hash
    state = httpx.get(f"{url}/state/sys:validators/current").json()
    assert len(state["validator_path"]["entries"]) == 2
    assert verify_state_response(genesis, state) is not None
    stripped = {k: x for k, x in resp.items() if k != "validator_path"}
    with pytest.raises(ProofInvalid, match="validator path up to this height"):
        verify_tx_response(genesis, stripped, require_receipt=False)
    cut = dict(resp, validator_path=dict(path, entries=path["entries"][:1]))  # stops before the second change
    with pytest.raises(ProofInvalid, match="validator path up to this height"):
        verify_tx_response(genesis, cut, require_receipt=False)
    # one corrupted commit signature in the path: refused, naming the entry
    bad = dict(path, entries=[dict(e) for e in path["entries"]])
    enc = bytearray(bytes.fromhex(bad["entries"][1]["commit"]["encoded"]))
    enc[-5] ^= 0xFF
    bad["entries"][1]["commit"] = dict(bad["entries"][1]["commit"], encoded=enc.hex())
    with pytest.raises(ProofInvalid, match=r"validator path entry 1 .*does not verify"):
        verify_validator_path(genesis, bad)

    for n in net.nodes:
        n.stop()
    p = _cli(net.root, "verify-ledger", "--home", str(net.nodes[3].home))
    assert "OK" in _out(p).upper()
