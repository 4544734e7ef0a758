"""The CLI against a real node, OpenAPI, and the /events WebSocket."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import websockets

from qilian.sdk.client import Client

from .conftest import Chain


def qilian(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qilian.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})


def test_cli_send_get_verify_state_block(chain: Chain) -> None:
    home, node = str(chain.home), chain.node.url
    out = qilian("tx", "send", "kv", "put", "cli-key", "0xdeadbeef", "--home", home, "--node", node, "--key",
                 f"{home}/keys/org1-client.pem")
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)
    assert sent["status"] == "committed" and sent["receipt"]["status"] == "ok"

    Client(node).call(chain.client_key, "kv", "put", ["another", "x"])  # a later block commits the receipt
    got = qilian("tx", "get", sent["hash"], "--home", home, "--node", node)
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    assert doc["verified"] == {"tx_in_block": sent["height"], "receipt_proven": True}
    assert doc["tx"]["args"] == ["cli-key", {"hex": "deadbeef"}]

    st = qilian("state", "get", "kv", "cli-key", "--home", home, "--node", node)
    assert st.returncode == 0, st.stderr
    sdoc = json.loads(st.stdout)
    assert sdoc["value"] == "deadbeef" and sdoc["verified"] is True

    blk = qilian("block", "get", str(sent["height"]), "--node", node)
    assert blk.returncode == 0
    assert sent["hash"] in [t["hash"] for t in json.loads(blk.stdout)["txs"]]

    # A genesis of another chain does not verify this chain's proofs.
    other = chain.home.parent / "other"
    assert qilian("init", "--home", str(other), "--suite", "ed25519", "--chain-id", "test-chain").returncode == 0
    bad = qilian("tx", "get", sent["hash"], "--node", node, "--genesis", str(other / "genesis.json"))
    assert bad.returncode == 1 and "PROOF INVALID" in bad.stderr

    refused = qilian("tx", "send", "kv", "put", "k", "v", "--node", node, "--key",
                     str(other / "keys" / "org1-client.pem"))
    assert refused.returncode == 1 and "not_member" in refused.stderr


def test_openapi_and_events(chain: Chain) -> None:
    spec = httpx.get(chain.node.url + "/openapi.json").json()
    for path in ("/txs", "/txs/{tx_hash}", "/blocks/{height}", "/blocks/latest", "/state/{namespace}/{key}",
                 "/status"):
        assert path in spec["paths"], path
    assert httpx.get(chain.node.url + "/docs").status_code == 200

    async def scenario() -> list[dict]:
        ws_url = chain.node.url.replace("http", "ws") + "/events"
        async with websockets.connect(ws_url) as ws:
            loop = asyncio.get_running_loop()
            res = await loop.run_in_executor(
                None, lambda: Client(chain.node.url).call(chain.client_key, "kv", "put", ["evt", "1"]))
            seen: list[dict] = []
            while not any(m.get("type") == "event" and m.get("tx_hash") == res["hash"] for m in seen):
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return seen

    msgs = asyncio.run(scenario())
    assert any(m["type"] == "block" for m in msgs)
    ev = next(m for m in msgs if m["type"] == "event")
    assert ev["source"] == "kv" and ev["name"] == "put" and ev["data"]["key"] == {"hex": b"evt".hex()}


def test_idle_chain_makes_one_follow_up_block_then_none(chain: Chain) -> None:
    """No empty blocks by default — except the one that commits the last block's receipts and state root."""
    import time

    c = Client(chain.node.url)
    res = c.call(chain.client_key, "kv", "put", ["idle", "1"])
    time.sleep(1.5)  # seven block intervals of 200 ms
    h = c.get_status()["height"]
    assert h == res["height"] + 1
    follow = c.get_block(h)
    assert follow["header"]["tx_count"] == 0
    time.sleep(0.6)
    assert c.get_status()["height"] == h
