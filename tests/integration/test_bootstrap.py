"""Four organisations bootstrap a chain from public files only, each on its own "host" (its own loopback address),
with its own key password — then the network commits a transaction signed by one organisation's client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from qilian.sdk.client import Client
from qilian.sdk.keys import load_key
from tests.integration.conftest import free_port

ORGS = ("port", "bank", "customs", "logistics")


def qilian(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "qilian.cli.main", "--output", "json", *args], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"qilian {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr
    return out


def test_four_orgs_bootstrap_from_public_files(tmp_path: Path) -> None:
    homes = {o: tmp_path / "machines" / o for o in ORGS}
    passwords = {o: f"pw-of-{o}" for o in ORGS}
    for i, org in enumerate(ORGS):
        qilian("org", "keygen", "--org", org, "--home", str(homes[org]), "--host", f"127.0.0.{11 + i}",
               "--suite", "ed25519", "--p2p-port", str(free_port()), "--api-port", str(free_port()),
               "--password-env", "ORG_PW", env={"ORG_PW": passwords[org]})
    # Only org.json travels; it holds no private material.
    for org in ORGS:
        doc = (homes[org] / "org.json").read_text()
        assert "PRIVATE" not in doc and json.loads(doc)["org"] == org
    public = tmp_path / "public"
    out = qilian("genesis", "assemble", *[str(homes[o] / "org.json") for o in ORGS], "--chain-id", "alliance",
                 "--out", str(public), "--block-interval-ms", "200")
    facts = json.loads(out.stdout)
    assert facts["validators"] == 4 and facts["organisations"] == ", ".join(ORGS)
    genesis = json.loads((public / "genesis.json").read_text())
    assert [o["name"] for o in genesis["organisations"]] == list(ORGS)

    procs = []
    apis = []
    try:
        for org in ORGS:
            node_home = homes[org] / f"{org}-node0"
            qilian("node", "configure", "--home", str(node_home), "--genesis", str(public / "genesis.json"),
                   "--peers", str(public / "peers.json"), "--lan")
            cfg = (node_home / "node.toml").read_text()
            assert f'name = "{org}-node0"' in cfg
            log = open(node_home / "node.log", "ab")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "qilian.cli.main", "node", "start", "--home", str(node_home)],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "QILIAN_KEY_PASSWORD": passwords[org], "PYTHONUNBUFFERED": "1"}))
            peers = json.loads((public / "peers.json").read_text())["peers"]
            me = next(p for p in peers if p["name"] == f"{org}-node0")
            apis.append(f"http://{me['host']}:{me['api_port']}")
        client = load_key(homes["bank"] / "keys" / "bank-client.pem", passwords["bank"].encode())
        deadline = time.monotonic() + 90
        res = None
        while time.monotonic() < deadline and res is None:
            assert all(p.poll() is None for p in procs), "a node exited"
            try:
                with Client(apis[2], timeout=30) as c:
                    res = c.call(client, "kv", "put", ["hello", "alliance"], wait="commit")
            except (httpx.HTTPError, OSError):
                time.sleep(0.5)
        assert res is not None and res["status"] == "committed", res
        height = res["height"]
        # Every node stores the same block.
        deadline = time.monotonic() + 60
        ids: set[str] = set()
        while time.monotonic() < deadline:
            try:
                ids = {httpx.get(f"{a}/blocks/{height}", timeout=5).json().get("header", {}).get("block_id", "")
                       for a in apis}
            except (httpx.HTTPError, ValueError):
                ids = set()
            if len(ids) == 1 and "" not in ids:
                break
            time.sleep(0.2)
        assert len(ids) == 1 and "" not in ids, ids
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
