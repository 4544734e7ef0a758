"""Governance on a real two-organisation chain, through the real CLI and API.

The finding this guards against: beta's admin alone replaced the system ``evidence`` contract and produced a
certificate that checked VALID with ``owner alpha`` for a document beta registered. Now the lone upgrade is
refused naming the policy, too few endorsements are refused naming the rule, a majority (proposal or endorsements)
changes policies and upgrades contracts, and even a majority-approved forged evidence contract cannot make a
certificate name another owner than the organisation of the key that signed the registration."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.node.config import init_home, load_genesis
from qilian.sdk.verify import verify_state_response
from qilian.types.codec import decode_raw
from qilian.types.core import ChainParams, Genesis

from .conftest import NodeProc, free_port

pytestmark = pytest.mark.timeout(300)

FORGED = '''
records = Hash()

@export
def register(digest: bytes, title: str, doc_type: str, uri: str):
    record = {"digest": digest, "title": title, "type": doc_type, "uri": uri, "owner_org": "alpha",
              "owner": ctx.sender, "height": ctx.height, "time_ms": ctx.time_ms, "tx_hash": ctx.tx_hash}
    records[digest] = record
    return record

@export
def get(digest: bytes):
    return records[digest]
'''
COUNTER = '''
n = Variable(default=0)

@export
def bump():
    n.set(n.get() + 1)
    return n.get()
'''


class Net:
    def __init__(self, home: Path, node: NodeProc, genesis: Genesis):
        self.home, self.node, self.genesis = home, node, genesis

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


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    home = tmp_path / "home"
    port = free_port()
    init_home(home, chain_id="gov-chain", suite_name="ed25519", organisations=("alpha", "beta"), api_port=port,
              params=ChainParams(block_interval_ms=200))
    n = Net(home, NodeProc(home, port), load_genesis(home / "genesis.json"))
    n.node.start()
    try:
        yield n
    finally:
        n.node.stop()


def _out(p: subprocess.CompletedProcess[str]) -> str:
    return " ".join((p.stdout + p.stderr).split())


def test_governance_end_to_end(net: Net, tmp_path: Path) -> None:
    forged = tmp_path / "forged.py"
    forged.write_text(FORGED)

    # 1. beta's admin alone cannot replace the evidence contract: refused, naming the policy
    p = net.cli("contract", "upgrade", "evidence", str(forged), "--key", net.key("beta-admin"), "--home",
                str(net.home), check=False)
    out = _out(p)
    assert p.returncode != 0
    assert "evidence is a system contract" in out and "contract.upgrade.system = MAJORITY of admin" in out
    assert "found 1 organisation (beta)" in out

    # 2. nor with endorsements of beta alone (offline multi-signature): refused, naming the rule
    action = tmp_path / "upgrade-evidence.json"
    net.cli("gov", "action", "upgrade", "evidence", str(forged), "--out", str(action), node=False)
    bundle = tmp_path / "bundle.json"
    net.cli("gov", "endorse", str(action), "--key", net.key("beta-admin"), "--out", str(bundle), "--home",
            str(net.home))
    p = net.cli("gov", "execute", str(bundle), "--key", net.key("beta-admin"), "--home", str(net.home), check=False)
    out = _out(p)
    assert p.returncode != 0 and "policy contract.upgrade.system is MAJORITY of admin in all organisations" in out
    assert "needs approval of 2 of 2 organisation(s), found 1 (beta)" in out
    assert httpx.get(f"{net.node.url}/contracts/evidence").json()["version"] == 1

    # 3. beta registers a document; its certificate names beta, from the proven sender, whatever the JSON says
    doc = tmp_path / "bill-of-lading.pdf"
    doc.write_bytes(b"%PDF-1.7 bill of lading, beta shipping" * 30)
    net.cli("evidence", "put", str(doc), "--key", net.key("beta-client"), "--home", str(net.home))
    cert = tmp_path / "cert.json"
    net.cli("evidence", "verify", str(doc), "--out", str(cert))
    p = net.cli("evidence", "check", str(cert), str(doc), "--genesis", str(net.home / "genesis.json"), node=False)
    assert "VALID" in p.stdout and "owner beta (client" in _out(p)
    edited = tmp_path / "edited-cert.json"
    edited.write_text(cert.read_text().replace('"beta"', '"alpha"'))  # every readable owner field, and genesis
    assert cert.read_text() != edited.read_text()
    p = net.cli("evidence", "check", str(edited), str(doc), check=False, node=False)
    out = _out(p)
    assert "owner alpha" not in out
    assert "VALID" in out and "owner beta (client" in out  # proven by the sys:member state proof, not the JSON
    p = net.cli("evidence", "check", str(edited), str(doc), "--genesis", str(net.home / "genesis.json"),
                check=False, node=False)
    assert p.returncode == 2 and "INVALID" in p.stdout

    # 4. a majority by endorsements (alpha + beta) changes a policy: user-contract upgrades now need MAJORITY
    pol = tmp_path / "policy.json"
    net.cli("gov", "action", "set-policy", "contract.upgrade", "MAJORITY", "--out", str(pol), node=False)
    net.cli("gov", "endorse", str(pol), "--key", net.key("alpha-admin"), "--out", str(bundle), "--home",
            str(net.home))
    p = net.cli("gov", "execute", str(bundle), "--key", net.key("beta-admin"), "--home", str(net.home))
    assert "approved by alpha, beta" in _out(p)
    p = net.cli("gov", "execute", str(bundle), "--key", net.key("beta-admin"), "--home", str(net.home), check=False)
    assert p.returncode != 0 and "already used" in _out(p)
    proven = httpx.get(f"{net.node.url}/gov/policies/contract.upgrade").json()
    for _ in range(5):  # a block or two after the change proves it
        if proven["state"]["value"] is not None and \
                decode_raw(bytes.fromhex(proven["state"]["value"]))[0] == "MAJORITY":
            break
        net.cli("tx", "send", "kv", "put", "tick", "tock", "--home", str(net.home), "--key", net.key("alpha-client"))
        proven = httpx.get(f"{net.node.url}/gov/policies/contract.upgrade").json()
    assert decode_raw(verify_state_response(net.genesis, proven["state"]) or b"")[0] == "MAJORITY"

    # 5. a user contract: its own admin alone is now refused; a MAJORITY proposal upgrades it
    counter = tmp_path / "counter.py"
    counter.write_text(COUNTER)
    p = net.cli("contract", "deploy", str(counter), "--key", net.key("alpha-admin"), "--home", str(net.home))
    addr = p.stdout.split(" at ")[1].split()[0]
    counter.write_text(COUNTER + "\n\n@export\ndef version():\n    return 2\n")
    p = net.cli("contract", "upgrade", addr, str(counter), "--key", net.key("alpha-admin"), "--home",
                str(net.home), check=False)
    assert p.returncode != 0 and "policy contract.upgrade is MAJORITY" in _out(p) and "found 1 (alpha)" in _out(p)
    up = tmp_path / "upgrade-counter.json"
    net.cli("gov", "action", "upgrade", addr, str(counter), "--out", str(up), node=False)
    p = net.cli("gov", "propose", str(up), "--key", net.key("alpha-admin"), "--home", str(net.home))
    assert "proposal 1: pending" in _out(p) and "yes: alpha" in _out(p)
    p = net.cli("gov", "vote", "1", "yes", "--key", net.key("alpha-admin"), "--home", str(net.home), check=False)
    assert p.returncode != 0 and "organisation alpha has already voted" in _out(p)
    p = net.cli("gov", "revoke", "1", "--key", net.key("beta-admin"), "--home", str(net.home), check=False)
    assert p.returncode != 0 and "only the proposer" in _out(p)
    p = net.cli("gov", "vote", "1", "yes", "--key", net.key("beta-admin"), "--home", str(net.home))
    assert "proposal 1: executed" in _out(p)
    info = httpx.get(f"{net.node.url}/contracts/{addr}").json()
    assert info["version"] == 2 and "version" in info["exports"]
    assert info["deployer"] == load_key_address(net, "alpha-admin")
    listed = net.cli("gov", "list")
    assert "executed" in listed.stdout and "contract.upgrade" in listed.stdout

    # 6. the consortium (both admins) may replace evidence, but even a forged contract it approves cannot make a
    # certificate name another organisation than the registering key's
    p = net.cli("gov", "propose", str(action), "--key", net.key("beta-admin"), "--home", str(net.home))
    p = net.cli("gov", "vote", "2", "yes", "--key", net.key("alpha-admin"), "--home", str(net.home))
    assert "proposal 2: executed" in _out(p)
    doc2 = tmp_path / "second.pdf"
    doc2.write_bytes(b"%PDF-1.7 registered by beta under a forged contract" * 30)
    net.cli("evidence", "put", str(doc2), "--key", net.key("beta-client"), "--home", str(net.home))
    p = net.cli("evidence", "verify", str(doc2), "--out", str(tmp_path / "cert2.json"), check=False)
    out = _out(p)
    assert p.returncode != 0 and "names owner 'alpha' but the registration was signed by a key of 'beta'" in out
    shown = net.cli("gov", "show", "2").stdout
    assert '"status": "executed"' in shown and '"resource": "contract.upgrade.system"' in shown

    # 7. beta revokes the key that registered the first document (SELF); a certificate made now still proves the
    # owner: the membership is proven at the registering height (certificate version 4), not at the tip
    client = net.key("beta-client")
    p = net.cli("member", "revoke", client, "--reason", "laptop lost", "--out", str(tmp_path / "rv.json"),
                "--propose", "--key", net.key("beta-admin"), "--home", str(net.home))
    assert "executed" in _out(p), _out(p)
    net.cli("tx", "send", "kv", "put", "tick", "tock", "--home", str(net.home), "--key", net.key("alpha-client"))
    cert3 = tmp_path / "cert3.json"
    net.cli("evidence", "verify", str(doc), "--out", str(cert3))
    p = net.cli("evidence", "check", str(cert3), str(doc), "--genesis", str(net.home / "genesis.json"), node=False)
    assert "VALID" in p.stdout and "owner beta (client" in _out(p)
    import json

    c3 = json.loads(cert3.read_text())
    assert c3["version"] == 4 and c3["member"]["header"]["height"] == c3["tx"]["height"]
    # the same key's membership at the tip is proven absent (revoked): a tip proof could not show the owner
    tip_doc = httpx.get(f"{net.node.url}/state/sys:member/{c3['member']['key']}", params={"encoding": "hex"}).json()
    assert verify_state_response(net.genesis, tip_doc) is None


def load_key_address(net: Net, name: str) -> str:
    from qilian.sdk.keys import load_key

    return load_key(Path(net.key(name))).address.hex()
