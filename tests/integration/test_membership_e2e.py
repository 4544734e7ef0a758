"""G1 and G7: organisations and keys changed at run time on a real node through the real CLI and API.

G1 — four organisations; "add organisation epsilon" with two votes stays pending and epsilon's transaction is
refused ``not_member``; the third vote executes it and epsilon's transaction commits from the next height; the
same by one offline multi-signature transaction; too few endorsements are refused naming the rule.
G7 — epsilon revokes its own client key (SELF): its transactions are refused from the height of revocation,
and ``qilian verify-ledger`` still verifies the older blocks that carry its transactions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.node.config import init_home
from qilian.sdk.client import build_tx
from qilian.sdk.keys import load_key
from qilian.types.core import ChainParams

from .conftest import NodeProc, free_port

pytestmark = pytest.mark.timeout(300)
ORGS = ("alpha", "beta", "gamma", "delta")


class Net:
    def __init__(self, home: Path, node: NodeProc):
        self.home, self.node = home, node

    def key(self, name: str) -> str:
        return str(self.home / "keys" / f"{name}.pem")

    def cli(self, *args: str, check: bool = True, node: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"COLUMNS": "250", "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "qilian.cli", *args]
        if node:
            cmd += ["--node", self.node.url]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=self.home)
        if check:
            assert p.returncode == 0, p.stdout + p.stderr
        return p

    def submit(self, key_path: Path | str, value: str) -> httpx.Response:
        kp = load_key(Path(key_path), None)
        h = int(httpx.get(self.node.url + "/status", timeout=5).json()["height"])
        tx = build_tx(kp, "member-chain", "kv", "put", [value, value], h + 100)
        return httpx.post(self.node.url + "/txs", params={"wait": "commit", "timeout": 10}, content=tx.encode(),
                          headers={"content-type": "application/octet-stream"}, timeout=20)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    home = tmp_path / "home"
    port = free_port()
    init_home(home, chain_id="member-chain", suite_name="ed25519", organisations=ORGS, api_port=port,
              params=ChainParams(block_interval_ms=200))
    n = Net(home, NodeProc(home, port))
    n.node.start()
    try:
        yield n
    finally:
        n.node.stop()


def _out(p: subprocess.CompletedProcess[str]) -> str:
    return " ".join((p.stdout + p.stderr).split())


def test_g1_g7_organisations_and_keys_at_run_time(net: Net, tmp_path: Path) -> None:
    # epsilon makes its keys on its own machine and hands over its public org.json
    eps = tmp_path / "epsilon"
    net.cli("org", "keygen", "--org", "epsilon", "--home", str(eps), "--host", "127.0.0.1", "--nodes", "0",
            "--suite", "ed25519", node=False)
    eps_client = eps / "keys" / "epsilon-client.pem"
    r = net.submit(eps_client, "before")
    assert r.status_code == 403 and r.json()["error"] == "not_member", r.text

    # G1: two of four organisations: pending; the transaction is still refused
    action = tmp_path / "org-add.json"
    net.cli("org", "add", str(eps / "org.json"), "--title", "Epsilon Bank", "--out", str(action), node=False)
    p = net.cli("gov", "propose", str(action), "--key", net.key("alpha-admin"))
    assert "proposal 1: pending" in _out(p)
    p = net.cli("gov", "vote", "1", "yes", "--key", net.key("beta-admin"))
    assert "proposal 1: pending" in _out(p) and "yes: alpha, beta" in _out(p)
    r = net.submit(eps_client, "still-not")
    assert r.status_code == 403 and r.json()["error"] == "not_member"
    # the third vote executes it; epsilon transacts from the next height
    p = net.cli("gov", "vote", "1", "yes", "--key", net.key("gamma-admin"))
    assert "proposal 1: executed" in _out(p)
    executed_at = int(httpx.get(net.node.url + "/gov/proposals/1").json()["proposal"]["decided"])
    r = net.submit(eps_client, "hello")
    assert r.status_code == 200 and r.json()["status"] == "committed", r.text
    assert r.json()["height"] > executed_at
    orgs = {o["name"]: o for o in httpx.get(net.node.url + "/gov/orgs").json()}
    assert orgs["epsilon"]["info"] == {"title": "Epsilon Bank"} and len(orgs["epsilon"]["members"]) == 2
    assert "epsilon" in _out(net.cli("org", "list"))

    # the same by one offline multi-signature transaction: zeta needs 3 of the now 5 organisations
    zeta = tmp_path / "zeta"
    net.cli("org", "keygen", "--org", "zeta", "--home", str(zeta), "--host", "127.0.0.1", "--nodes", "0",
            "--suite", "ed25519", node=False)
    zaction = tmp_path / "zeta-add.json"
    net.cli("org", "add", str(zeta / "org.json"), "--out", str(zaction), node=False)
    bundle = tmp_path / "zeta-bundle.json"
    net.cli("gov", "endorse", str(zaction), "--key", net.key("beta-admin"), "--out", str(bundle), "--home",
            str(net.home))
    p = net.cli("gov", "execute", str(bundle), "--key", net.key("alpha-admin"), "--home", str(net.home), check=False)
    out = _out(p)
    assert p.returncode != 0 and "policy org.add is MAJORITY of admin in all organisations" in out
    assert "needs approval of 3 of 5 organisation(s), found 2 (alpha, beta)" in out
    net.cli("gov", "endorse", str(bundle), "--key", net.key("delta-admin"), "--home", str(net.home))
    p = net.cli("gov", "execute", str(bundle), "--key", net.key("alpha-admin"), "--home", str(net.home))
    assert "approved by alpha, beta, delta" in _out(p)
    r = net.submit(zeta / "keys" / "zeta-client.pem", "zeta-hello")
    assert r.status_code == 200 and r.json()["status"] == "committed", r.text

    # G7: epsilon revokes its own client key (SELF); refused from then on; the old blocks still verify
    p = net.cli("member", "revoke", str(eps_client), "--reason", "laptop lost", "--out",
                str(tmp_path / "rev.json"), "--propose", "--key", str(eps / "keys" / "epsilon-admin.pem"))
    assert "executed" in _out(p)
    r = net.submit(eps_client, "after-revoke")
    assert r.status_code == 403 and r.json()["error"] == "not_member"
    m = httpx.get(net.node.url + "/gov/members/" + load_key(eps_client, None).public_key.hex()).json()
    assert m["reason"] == "laptop lost" and m["org"] == "epsilon" and m["revoked_at"] > executed_at
    # another organisation cannot revoke epsilon's keys on its own
    p = net.cli("member", "revoke", str(zeta / "keys" / "zeta-client.pem"), "--out", str(tmp_path / "r2.json"),
                "--propose", "--key", net.key("alpha-admin"))
    assert "pending" in _out(p)
    net.node.stop()
    p = net.cli("verify-ledger", "--home", str(net.home), node=False)
    assert p.returncode == 0 and "OK" in _out(p).upper()
