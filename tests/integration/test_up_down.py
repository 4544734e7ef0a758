"""The README's run command: `qilian up` creates and starts a 4-validator network that commits a transaction;
`qilian down` stops every process of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .netutil import _free_block

pytestmark = pytest.mark.timeout(120)


def _qilian(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qilian.cli", *args], capture_output=True, text=True, timeout=90,
                          env=dict(os.environ, COLUMNS="200"))


def test_up_detach_send_and_down(tmp_path: Path) -> None:
    home = tmp_path / "devnet"
    api, p2p = _free_block(4), _free_block(4)
    up = _qilian("up", "--home", str(home), "--validators", "4", "--suite", "ed25519", "--port", str(api),
                 "--p2p-port", str(p2p), "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "4 validator(s) committing blocks" in up.stdout
    pids = [e["pid"] for e in json.loads((home / "pids").read_text())]
    try:
        sent = _qilian("tx", "send", "kv", "put", "hello", "world", "--home", str(home), "--node",
                       f"http://127.0.0.1:{api + 2}")
        assert sent.returncode == 0 and json.loads(sent.stdout)["status"] == "committed", sent.stdout + sent.stderr
        for i in range(4):
            st = httpx.get(f"http://127.0.0.1:{api + i}/status", timeout=5).json()
            assert len(st["peers"]) == 3
    finally:
        down = _qilian("down", "--home", str(home))
    assert down.returncode == 0 and "stopped node0, node1, node2, node3" in down.stdout
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split()[2] != "Z"
