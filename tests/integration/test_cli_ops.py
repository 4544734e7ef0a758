"""`qilian status`, `qilian events` (replay from a height, then live, with no gap), `qilian keys list`,
`qilian contract show|source` against a real node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from qilian.sdk.client import Client

from .conftest import Chain, free_port


def qilian(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qilian.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"}, stdin=subprocess.DEVNULL)


def test_status_events_keys_contracts(chain: Chain) -> None:
    url = chain.node.url
    c = Client(url)
    first = c.call(chain.client_key, "kv", "put", ["alpha", "1"])
    c.call(chain.client_key, "kv", "put", ["beta", "2"])

    st = qilian("--output", "json", "status", "--node", url)
    assert st.returncode == 0, st.stderr
    rows = json.loads(st.stdout)
    assert rows[0]["up"] and rows[0]["height"] >= first["height"] and rows[0]["behind"] == 0
    dead = qilian("--output", "json", "status", "--node", f"http://127.0.0.1:{free_port()}")
    assert dead.returncode == 1 and json.loads(dead.stdout)[0]["up"] is False

    ev = qilian("events", "--node", url, "--from-height", str(first["height"]), "--source", "kv")
    assert ev.returncode == 0, ev.stderr
    lines = [json.loads(x) for x in ev.stdout.splitlines()]
    keys = [bytes.fromhex(m["data"]["key"]["hex"]) for m in lines if m["type"] == "event"]
    assert keys[:2] == [b"alpha", b"beta"], lines
    assert all(m["height"] >= first["height"] for m in lines)

    # --follow: the replay hands over to the live feed without losing what commits in between.
    proc = subprocess.Popen([sys.executable, "-m", "qilian.cli.main", "events", "--node", url, "--follow",
                             "--from-height", str(first["height"]), "--source", "kv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for i in range(3):
            c.call(chain.client_key, "kv", "put", [f"live{i}", "x"], wait="none")
        seen: list[bytes] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not {b"live0", b"live1", b"live2"} <= set(seen):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            m = json.loads(line)
            if m["type"] == "event":
                seen.append(bytes.fromhex(m["data"]["key"]["hex"]))
        assert seen[:2] == [b"alpha", b"beta"] and {b"live0", b"live1", b"live2"} <= set(seen), seen
        assert len(seen) == len(set(seen)), f"an event was delivered twice: {seen}"
    finally:
        proc.kill()
        proc.wait(10)

    keys_out = qilian("--output", "json", "keys", "list", "--home", str(chain.home))
    assert keys_out.returncode == 0, keys_out.stderr
    by_file = {os.path.basename(r["file"]): r for r in json.loads(keys_out.stdout)}
    assert by_file["org1-client.pem"]["org"] == "org1" and by_file["org2-admin.pem"]["roles"] == "admin,member"

    show = qilian("--output", "json", "contract", "show", "evidence", "--node", url)
    assert show.returncode == 0, show.stderr
    assert "register" in json.loads(show.stdout)["exports"]
    src = qilian("contract", "source", "evidence", "--node", url)
    assert src.returncode == 0 and "@export" in src.stdout
    listed = qilian("--output", "json", "contract", "list", "--node", url)
    assert listed.returncode == 0, listed.stderr
    assert any(x["address"] == "evidence" for x in json.loads(listed.stdout)["items"])


def test_contract_arguments_follow_the_signature(chain: Chain, tmp_path: Path) -> None:
    """`amount: int` takes `250`, `to: str` keeps hex-looking text as text, `flag: bool` takes `true`."""
    src = tmp_path / "typed.py"
    src.write_text("@export\ndef f(to: str, amount: int, flag: bool, raw: bytes):\n"
                   "    return [to, amount + 1, flag, raw]\n")
    dep = qilian("contract", "deploy", str(src), "-q", "--key", str(chain.home / "keys" / "org1-admin.pem"),
                 "--node", chain.node.url)
    assert dep.returncode == 0, dep.stderr
    addr = dep.stdout.strip()
    q = qilian("--output", "json", "contract", "query", addr, "f", "0b0b", "250", "true", "0x00ff",
               "--node", chain.node.url)
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["result"] == ["0b0b", 251, True, {"hex": "00ff"}]
    bad = qilian("contract", "query", addr, "f", "x", "many", "true", "00", "--node", chain.node.url)
    assert bad.returncode == 1 and "argument 2" in bad.stderr and "Traceback" not in bad.stderr


def test_tx_list_and_the_receipt_summary(chain: Chain) -> None:
    key = str(chain.home / "keys" / "org1-client.pem")
    sent = qilian("--output", "table", "tx", "send", "kv", "put", "listed", "yes", "--key", key,
                  "--node", chain.node.url)
    assert sent.returncode == 0, sent.stderr
    assert "ok: committed at height" in sent.stdout and '"encoded"' not in sent.stdout
    me = chain.client_key.address.hex()
    deadline = time.monotonic() + 30
    items: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        out = qilian("--output", "json", "tx", "list", "--account", me, "--node", chain.node.url)
        assert out.returncode == 0, out.stderr
        items = json.loads(out.stdout)["items"]
        if items:
            break
        time.sleep(0.2)
    assert items and items[0]["method"] == "put" and items[0]["sender"] == me
    bad = qilian("tx", "list", "--account", "not an address!", "--node", chain.node.url)
    assert bad.returncode == 1 and "bad_address" in bad.stderr and "Traceback" not in bad.stderr
