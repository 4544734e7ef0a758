"""A real node process: send transactions over HTTP, read them back with proofs, SIGKILL it, restart it, and find
every transaction that was acknowledged as committed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from qilian.crypto import get_suite
from qilian.sdk.client import Client, build_tx
from qilian.sdk.keys import load_key
from qilian.sdk.verify import ProofInvalid, verify_state_response, verify_tx_response
from qilian.types.core import compute_tx_hash

from .conftest import Chain, make_chain


def _send_load(url: str, chain: Chain, stop: threading.Event, acked: list[str], start_height: int,
               prefix: str) -> None:
    """Send kv.put transactions with wait=commit until told to stop; record the acknowledged hashes."""
    i = 0
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set() and i < 5000:
            tx = build_tx(chain.client_key, "test-chain", "kv", "put", [f"{prefix}-{i}", f"value-{i}"],
                          start_height + 900)
            try:
                r = http.post("/txs", params={"wait": "commit", "timeout": 5}, content=tx.encode(),
                              headers={"content-type": "application/octet-stream"})
            except httpx.HTTPError:
                return  # the node died under us: whatever was not acknowledged may be lost
            if r.status_code == 200 and r.json()["status"] == "committed":
                acked.append(r.json()["hash"])
            i += 1


def _wait_height(c: Client, h: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while c.get_status()["height"] < h:
        assert time.monotonic() < deadline, f"chain did not reach height {h}"
        time.sleep(0.05)


def test_send_read_prove_kill_restart(chain: Chain) -> None:
    c = Client(chain.node.url)
    st = c.get_status()
    assert st["chain_id"] == "test-chain" and st["suite"] == "ed25519"

    # A committed write, read back with a proof that a genesis-only client accepts.
    res = c.call(chain.client_key, "kv", "put", ["alpha", b"\x00\x01binary"])
    assert res["status"] == "committed", res
    assert res["receipt"]["status"] == "ok"
    tx_hash = res["hash"]
    _wait_height(c, res["height"] + 1)  # the next header commits the receipt
    got = c.get_tx(tx_hash)
    v = verify_tx_response(chain.genesis, got)
    assert v.tx_hash.hex() == tx_hash and v.receipt is not None and v.receipt.status == 0
    assert v.height == res["height"]

    # Tampering with any part of the response is caught.
    forged = {**got, "receipt": {**got["receipt"], "encoded": got["receipt"]["encoded"][:-2] + "00"}}
    with pytest.raises(ProofInvalid):
        verify_tx_response(chain.genesis, forged)
    forged_hdr = {**got, "proof": {**got["proof"], "tx": {**got["proof"]["tx"], "merkle": {
        **got["proof"]["tx"]["merkle"], "index": 0, "size": 2}}}}
    with pytest.raises(ProofInvalid):
        verify_tx_response(chain.genesis, forged_hdr)

    # State value and absence, both proven.
    s = c.get_state("kv", b"alpha")
    assert verify_state_response(chain.genesis, s) == b"\x00\x01binary"
    s_absent = c.get_state("kv", b"never-written")
    assert s_absent["value"] is None
    assert verify_state_response(chain.genesis, s_absent) is None
    lie = {**s_absent, "value": b"something".hex()}
    with pytest.raises(ProofInvalid):
        verify_state_response(chain.genesis, lie)

    # Continuous load, then SIGKILL at an arbitrary moment.
    acked: list[str] = [tx_hash]
    stop = threading.Event()
    th = threading.Thread(target=_send_load, args=(chain.node.url, chain, stop, acked, st["height"], "load"))
    th.start()
    time.sleep(2.0)
    chain.node.kill()
    stop.set()
    th.join(15)
    assert len(acked) > 5, "load made no progress before the kill"

    chain.node.start()
    c2 = Client(chain.node.url)
    for h in acked:
        got = c2.get_tx(h)
        verify_tx_response(chain.genesis, got, require_receipt=False)
    # Exactly once: every acknowledged hash maps to one location, and block tx counts add up.
    heights = {c2.get_tx(h)["height"] for h in acked}
    assert all(isinstance(x, int) for x in heights)

    # The chain keeps going after the restart.
    res2 = c2.call(chain.client_key, "kv", "put", ["after-restart", "yes"])
    assert res2["status"] == "committed"
    chain.node.stop()
    out = subprocess.run([sys.executable, "-m", "qilian.cli.main", "verify-ledger", "--home", str(chain.home)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verified" in out.stdout


def test_repeated_sigkill_keeps_store_consistent(tmp_path: Path) -> None:
    """SIGKILL the node five times at different moments under load; it always reopens at a committed block,
    loses nothing acknowledged, and the ledger verifies."""
    chain = make_chain(tmp_path, interval_ms=50)
    acked: list[str] = []
    try:
        for round_ in range(5):
            chain.node.start()
            height = Client(chain.node.url).get_status()["height"]
            stop = threading.Event()
            threads = [
                threading.Thread(target=_send_load,
                                 args=(chain.node.url, chain, stop, acked, height, f"r{round_}t{t}"))
                for t in range(3)
            ]
            for t in threads:
                t.start()
            time.sleep(0.7 + 0.37 * round_)
            chain.node.kill()
            stop.set()
            for t in threads:
                t.join(15)
        chain.node.start()
        c = Client(chain.node.url)
        for h in acked:
            assert c.get_tx(h)["hash"] == h
    finally:
        chain.node.stop()
    assert len(acked) > 20
    out = subprocess.run([sys.executable, "-m", "qilian.cli.main", "verify-ledger", "--home", str(chain.home)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sm2_chain_end_to_end(tmp_path: Path) -> None:
    """The national-cryptography suite through the whole pipeline: SM2-signed transactions, SM3 roots, an SM2
    commit, and proofs a genesis-only client accepts."""
    chain = make_chain(tmp_path, suite="sm2", interval_ms=100)
    chain.node.start()
    try:
        c = Client(chain.node.url)
        assert c.get_status()["suite"] == "sm2"
        res = c.call(chain.client_key, "kv", "put", ["国密", "SM2/SM3"])
        assert res["status"] == "committed"
        _wait_height(c, res["height"] + 1)
        v = verify_tx_response(chain.genesis, c.get_tx(res["hash"]))
        assert v.receipt is not None and v.receipt.status == 0
        assert len(v.tx.signature) == 64 and len(v.tx.body.sender) == 65
        assert verify_state_response(chain.genesis, c.get_state("kv", "国密".encode())) == b"SM2/SM3"
    finally:
        chain.node.stop()


SPINNER = """
@export
def spin():
    n = 0
    while True:
        n = n + 1
"""


def test_status_answers_while_a_long_block_executes(tmp_path: Path) -> None:
    """A block of loop-heavy contract calls takes seconds to execute; it runs on the execution thread, so the API
    (and consensus) keep answering meanwhile: every /status within 200 ms."""
    chain = make_chain(tmp_path, interval_ms=50)
    chain.node.start()
    try:
        c = Client(chain.node.url)
        admin = load_key(chain.home / "keys" / "org1-admin.pem")
        res = c.call(admin, "contracts", "deploy", ["spinner", SPINNER])
        assert res["receipt"]["status"] == "ok", res
        address = res["receipt"]["result"]
        h = c.get_status()["height"]
        txs = [build_tx(chain.client_key, "test-chain", address, "spin", [], h + 100) for _ in range(6)]
        last_hash = compute_tx_hash(get_suite("ed25519"), txs[-1].body).hex()
        with httpx.Client(base_url=chain.node.url, timeout=10) as http:
            for tx in txs:  # one block (each call burns its whole fuel: seconds of execution together)
                r = http.post("/txs", content=tx.encode(), headers={"content-type": "application/octet-stream"})
                assert r.status_code == 202, r.text
            t0 = time.monotonic()
            worst = 0.0
            committed_at: float | None = None
            deadline = t0 + 60
            while time.monotonic() < deadline:
                s = time.perf_counter()
                r = http.get("/status")
                worst = max(worst, time.perf_counter() - s)
                assert r.status_code == 200
                if committed_at is None and http.get(f"/txs/{last_hash}").status_code == 200:
                    committed_at = time.monotonic()
                    break
                time.sleep(0.02)
        assert committed_at is not None, "the spinning block was never committed"
        assert committed_at - t0 > 1.0, f"the block took only {committed_at - t0:.2f} s: not a long block"
        assert worst < 0.2, f"/status took {worst * 1000:.0f} ms while a block executed"
    finally:
        chain.node.stop()
