"""The regulator (监管) and the governance audit trail on a real node, through the real CLI and API.

Alpha adds a supervisory key with the ``regulator`` role (SELF). An admin without the role cannot freeze — the
refusal names the rule. The regulator freezes beta's client until a height: its transactions fail with the
``[frozen]`` code while reads work, it appeals, and the freeze lapses at its height; an indefinite freeze is
lifted by ``unfreeze``; an abolished account never returns (no unfreeze, no re-admission). Then ``qilian gov
history`` exports every governance action of the range with its proofs, ``qilian gov verify-history`` checks it
offline from genesis, and an export with one edited byte is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
CHAIN = "reg-chain"


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

    def height(self) -> int:
        return int(httpx.get(self.node.url + "/status", timeout=5).json()["height"])

    def submit(self, key_path: Path | str, value: str) -> httpx.Response:
        kp = load_key(Path(key_path), None)
        tx = build_tx(kp, CHAIN, "kv", "put", [value, value], self.height() + 100)
        return httpx.post(self.node.url + "/txs", params={"wait": "commit", "timeout": 10}, content=tx.encode(),
                          headers={"content-type": "application/octet-stream"}, timeout=20)

    def wait_height(self, height: int, timeout: float = 60) -> None:
        """Advance the chain to ``height`` (blocks are made when there are transactions: alpha's admin ticks)."""
        deadline = time.monotonic() + timeout
        while self.height() < height:
            assert time.monotonic() < deadline, f"chain did not reach height {height}"
            self.submit(self.key("alpha-admin"), f"tick-{self.height()}")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    home = tmp_path / "home"
    port = free_port()
    init_home(home, chain_id=CHAIN, suite_name="ed25519", organisations=("alpha", "beta"), api_port=port,
              params=ChainParams(block_interval_ms=200))
    n = Net(home, NodeProc(home, port))
    n.node.start()
    try:
        yield n
    finally:
        n.node.stop()


def _out(p: subprocess.CompletedProcess[str]) -> str:
    return " ".join((p.stdout + p.stderr).split())


def test_regulator_freeze_expiry_unfreeze_abolish_and_verified_history(net: Net, tmp_path: Path) -> None:
    start = max(1, net.height())
    sup = tmp_path / "supervisor.pem"
    net.cli("keys", "new", "--out", str(sup), "--suite", "ed25519", node=False)
    p = net.cli("member", "add", "alpha", "supervisor", str(sup), "--roles", "regulator", "--out",
                str(tmp_path / "sup.json"), "--propose", "--key", net.key("alpha-admin"))
    assert "executed" in _out(p)
    beta_client = net.key("beta-client")
    beta_addr = load_key(Path(beta_client), None).address.hex()
    ok = net.submit(beta_client, "before")
    assert ok.json()["receipt"]["status"] == "ok", ok.text

    # an admin without the regulator role cannot freeze: the refusal names the rule
    p = net.cli("freeze", beta_client, "--reason", "not my job", "--key", net.key("alpha-admin"), check=False)
    assert p.returncode != 0
    assert "policy regulator.freeze is ANY of regulator in all organisations: needs approval of 1 of 2 " \
           "organisation(s), found 0 (none)" in _out(p)

    # the regulator freezes beta's client for a few blocks: its writes fail with the code, reads work
    p = net.cli("freeze", beta_client, "--reason", "suspicious transfers, case 7", "--blocks", "12", "--key",
                str(sup))
    assert "frozen account " + beta_addr in _out(p) and "approved by alpha" in _out(p)
    until = int(httpx.get(f"{net.node.url}/gov/regulation/{beta_addr}").json()["regulation"]["until"])
    # refused at admission already (it could only fail in a block), with the block rule's own text
    r = net.submit(beta_client, "during")
    assert r.status_code == 400 and r.json()["error"] == "frozen", r.text
    refusal = r.json()["message"]
    assert refusal.startswith(f"[frozen] account {beta_addr} is frozen until height {until} (by alpha")
    assert "'suspicious transfers, case 7'" in refusal
    state = httpx.get(f"{net.node.url}/state/kv/{b'before'.hex()}", params={"encoding": "hex"}).json()
    assert state["value"] == b"before".hex()  # reads work
    p = net.cli("appeal", "--reason", "refunds to customers", "--key", beta_client)
    assert "appealed" in _out(p)
    # the freeze lapses at its height by itself
    net.wait_height(until)
    r = net.submit(beta_client, "after-expiry")
    assert r.json()["receipt"]["status"] == "ok", r.text

    # an indefinite freeze of alpha's client, lifted by unfreeze
    alpha_client = net.key("alpha-client")
    net.cli("freeze", alpha_client, "--reason", "audit", "--key", str(sup))
    assert net.submit(alpha_client, "x").json()["message"].startswith("[frozen] account")
    assert "until unfrozen" in net.submit(alpha_client, "y").json()["message"]
    p = net.cli("unfreeze", alpha_client, "--reason", "audit closed", "--key", str(sup))
    assert "unfrozen account" in _out(p)
    assert net.submit(alpha_client, "z").json()["receipt"]["status"] == "ok"

    # abolish is permanent: the key is refused at admission, never unfrozen, never re-admitted
    p = net.cli("abolish", beta_client, "--reason", "licence withdrawn", "--key", str(sup))
    assert "abolished account" in _out(p)
    r = net.submit(beta_client, "gone")
    assert r.status_code == 403 and r.json()["error"] == "not_member"
    p = net.cli("unfreeze", beta_client, "--reason", "mercy", "--key", str(sup), check=False)
    assert p.returncode != 0 and f"[abolished] account {beta_addr} was abolished" in _out(p)
    p = net.cli("member", "add", "beta", "again", beta_client, "--out", str(tmp_path / "again.json"), "--propose",
                "--key", net.key("beta-admin"), check=False)
    assert p.returncode != 0 and "[abolished] account" in _out(p) and "can never become a member" in _out(p)

    # the audit trail: every governance action of the range, verified offline from genesis
    net.wait_height(net.height() + 2)
    last = net.height() - 1
    export = tmp_path / "history.json"
    net.cli("gov", "history", "--from", str(start), "--to", str(last), "--format", "json", "--out", str(export))
    doc = json.loads(export.read_text())
    calls = [(e["module"], e["method"], e["outcome"]) for e in doc["entries"]]
    assert ("gov", "propose", "ok") in calls  # the member.add of the supervisor
    assert ("regulator", "freeze", "failed") in calls and ("regulator", "freeze", "ok") in calls
    assert ("regulator", "appeal", "ok") in calls and ("regulator", "unfreeze", "ok") in calls
    assert ("regulator", "abolish", "ok") in calls and ("gov", "propose", "failed") in calls
    freeze = next(e for e in doc["entries"] if e["action"] == "regulator.freeze" and e["outcome"] == "ok")
    assert freeze["approvers"] == ["alpha"] and freeze["events"][0]["data"]["reason"] == \
        "suspicious transfers, case 7"
    genesis = str(net.home / "genesis.json")
    p = net.cli("gov", "verify-history", str(export), "--genesis", genesis, "--table", node=False)
    assert "VALID" in _out(p) and f"{len(doc['entries'])} governance transaction(s)" in _out(p)
    assert "regulator.abolish" in _out(p)

    # one edited byte anywhere is refused: a reason, a readable header field, a proof byte, the layout
    text = export.read_text()
    at = text.index('"encoded": "', text.index('"proof"')) + len('"encoded": "') + 20  # a byte of a header
    flipped = text[:at] + ("1" if text[at] == "0" else "0") + text[at + 1:]
    edits = [text.replace("suspicious transfers, case 7", "suspicious transfers, case 8", 1),
             text.replace('"outcome": "failed"', '"outcome": "ok"', 1),
             text.replace('"time_ms": ', '"time_ms": 1', 1),
             flipped,
             text.replace("\n", "\n ", 1)]
    for i, edited in enumerate(edits):
        assert edited != text, i
        bad = tmp_path / f"edited-{i}.json"
        bad.write_text(edited)
        p = net.cli("gov", "verify-history", str(bad), "--genesis", genesis, check=False, node=False)
        assert p.returncode == 2 and "INVALID" in _out(p), (i, _out(p))
