"""Contracts on a real node through the real CLI and API: deploy, call, query; a resource bomb ends as a fuel or
limit error while the node keeps serving; an evidence certificate checks offline and fails after one byte of the
file or the certificate changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.sdk.client import Client
from qilian.sdk.keys import load_key

from .conftest import Chain, make_chain

pytestmark = pytest.mark.timeout(180)

TOKEN = """
balances = Hash(default=0)

@export
def init(amount: int):
    balances[ctx.sender] = amount

@export
def transfer(to: str, amount: int):
    assert amount > 0, "amount must be positive"
    b = balances[ctx.sender]
    assert b >= amount, "insufficient balance"
    balances[ctx.sender] = b - amount
    balances[to] += amount
    emit("Transfer", {"to": to, "amount": amount})
    return balances[to]

@export
def balance_of(who: str):
    return balances[who]

@export
def bomb():
    s = "ab"
    while True:
        s = s + s

@export
def spin():
    n = 0
    while True:
        n = n + 1
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Chain]:
    c = make_chain(tmp_path, suite="sm2")
    c.node.start()
    try:
        yield c
    finally:
        c.node.stop()


def _cli(chain: Chain, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "qilian.cli", *args, "--node", chain.node.url] if args[0] not in (
        "evidence-check",) else [sys.executable, "-m", "qilian.cli", *args[1:]],
        capture_output=True, text=True, timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def test_deploy_call_query_and_bombs(node: Chain, tmp_path: Path) -> None:
    src = tmp_path / "token.py"
    src.write_text(TOKEN)
    out = _cli(node, "contract", "deploy", str(src), "--init", "int:1000", "--home", str(node.home), "--key",
               str(node.home / "keys" / "org1-admin.pem")).stdout
    address = out.split(" at ")[1].split()[0]
    deployer = load_key(node.home / "keys" / "org1-admin.pem")
    admin = deployer.address.hex()
    res = json.loads(_cli(node, "contract", "call", address, "transfer", "bob", "int:250", "--home",
                          str(node.home), "--key", str(node.home / "keys" / "org1-admin.pem")).stdout)
    assert res["receipt"]["status"] == "ok" and res["receipt"]["result"] == 250
    assert res["receipt"]["fuel_used"] > 0 and res["receipt"]["events"][0]["name"] == "Transfer"
    q = json.loads(_cli(node, "contract", "query", address, "balance_of", admin).stdout)
    assert q["ok"] and q["result"] == 750

    # The API: contract info and a query with bytes arguments in JSON form.
    info = httpx.get(f"{node.node.url}/contracts/{address}", timeout=10).json()
    assert info["exports"] == ["init", "transfer", "balance_of", "bomb", "spin"] and info["version"] == 1
    r = httpx.post(f"{node.node.url}/contracts/{address}/query", json={"method": "balance_of", "args": ["bob"]},
                   timeout=10).json()
    assert r == {"ok": True, "result": 250, "error": None, "fuel_used": r["fuel_used"], "out_of_fuel": False,
                 "height": r["height"]}

    # Resource bombs: a failed receipt each, and the node keeps serving.
    c = Client(node.node.url)
    for method, status in (("bomb", "failed"), ("spin", "out_of_fuel")):
        res = c.call(deployer, address, method, [])
        assert res["receipt"]["status"] == status, res["receipt"]
    assert c.call(deployer, address, "transfer", ["carol", 1])["receipt"]["status"] == "ok"

    # A contract that does not validate is refused before any transaction, naming line and rule.
    bad = tmp_path / "bad.py"
    bad.write_text("@export\ndef f():\n    return ().__class__\n")
    p = _cli(node, "contract", "deploy", str(bad), "--home", str(node.home), check=False)
    assert p.returncode != 0 and "line 3: [underscore]" in (p.stdout + p.stderr)
    # A client key may not deploy (the role check is the chain's, not the CLI's).
    p = _cli(node, "contract", "deploy", str(src), "--name", "t2", "--home", str(node.home), "--key",
             str(node.home / "keys" / "org1-client.pem"), check=False)
    assert p.returncode != 0 and "forbidden" in (p.stdout + p.stderr)


def test_evidence_certificate_checks_offline_and_detects_tampering(node: Chain, tmp_path: Path) -> None:
    doc = tmp_path / "contract-of-sale.pdf"
    doc.write_bytes(b"%PDF-1.7 a contract of sale between two port operators" * 40)
    client = str(node.home / "keys" / "org1-client.pem")
    _cli(node, "evidence", "put", str(doc), "--home", str(node.home), "--key", client)
    again = _cli(node, "evidence", "put", str(doc), "--home", str(node.home), "--key", client, check=False)
    assert again.returncode != 0 and "already registered" in again.stdout + again.stderr
    cert = tmp_path / "cert.json"
    _cli(node, "evidence", "verify", str(doc), "--out", str(cert))
    node.node.stop()  # offline from here on

    ok = _cli(node, "evidence-check", "evidence", "check", str(cert), str(doc), "--genesis",
              str(node.home / "genesis.json"))
    assert "VALID" in ok.stdout and "the file matches" in ok.stdout

    changed = tmp_path / "changed.pdf"
    data = bytearray(doc.read_bytes())
    data[100] ^= 1
    changed.write_bytes(bytes(data))
    p = _cli(node, "evidence-check", "evidence", "check", str(cert), str(changed), check=False)
    assert p.returncode == 2 and "INVALID" in p.stdout

    text = cert.read_text()
    doc_json = json.loads(text)
    enc = doc_json["tx"]["tx"]["encoded"] if "encoded" in doc_json["tx"]["tx"] else None
    target = enc or doc_json["tx"]["receipt"]["encoded"]
    i = len(target) // 2
    flipped = target[:i] + ("0" if target[i] != "0" else "1") + target[i + 1:]
    bad_cert = tmp_path / "bad-cert.json"
    bad_cert.write_text(text.replace(target, flipped, 1))
    p = _cli(node, "evidence-check", "evidence", "check", str(bad_cert), check=False)
    assert p.returncode == 2 and "INVALID" in p.stdout
