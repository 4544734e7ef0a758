"""Tampering is caught by verify-ledger; hostile API input gets a named 4xx and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from qilian.crypto import get_suite
from qilian.sdk.client import Client, build_tx
from qilian.sdk.keys import generate_key
from qilian.storage.store import ChainStore
from qilian.types.core import TxBody, sign_tx

from .conftest import Chain, make_chain


def _verify_ledger(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qilian.cli.main", "verify-ledger", "--home", str(home)],
                          capture_output=True, text=True, timeout=120)


def test_verify_ledger_names_the_tampered_block(tmp_path: Path) -> None:
    chain = make_chain(tmp_path, interval_ms=100)
    chain.node.start()
    c = Client(chain.node.url)
    heights = []
    for i in range(4):
        heights.append(c.call(chain.client_key, "kv", "put", [f"k{i}", f"v{i}" * 10])["height"])
    chain.node.stop()
    assert _verify_ledger(chain.home).returncode == 0

    target = heights[2]
    store = ChainStore(chain.home / "data")  # edit underneath the store's API: its engine, table b"b" (blocks)
    raw = bytearray(store.kv.get(b"b", target.to_bytes(8, "big")) or b"")
    # Flip one byte inside the last transaction's value ("v2v2…" text near the end of the block).
    pos = bytes(raw).rfind(b"v2v2")
    assert pos > 0
    raw[pos] ^= 0x01
    store.kv.write([(b"b", target.to_bytes(8, "big"), bytes(raw))])
    store.close()

    out = _verify_ledger(chain.home)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"block {target}" in out.stderr, out.stderr


def test_hostile_api_input_gets_named_errors(chain: Chain) -> None:
    url = chain.node.url
    http = httpx.Client(base_url=url, timeout=10)
    before = http.get("/status").json()
    suite = get_suite("ed25519")
    height = before["height"]

    def post(content: bytes, **kw: object) -> httpx.Response:
        return http.post("/txs", content=content, headers={"content-type": "application/octet-stream"}, **kw)

    r = post(b"\xff\x00garbage")
    assert r.status_code == 400 and r.json()["error"] == "malformed"
    r = post(b"")
    assert r.status_code == 400
    r = http.post("/txs", json={"tx": "zz"})
    assert r.status_code == 400 and "hex" in r.json()["message"]
    r = http.post("/txs", json=[1, 2])
    assert r.status_code == 400

    wrong_chain = build_tx(chain.client_key, "other-chain", "kv", "put", ["a", "b"], height + 10)
    r = post(wrong_chain.encode())
    assert r.status_code == 400 and r.json()["error"] == "wrong_chain"

    outsider = generate_key("ed25519")
    r = post(build_tx(outsider, "test-chain", "kv", "put", ["a", "b"], height + 10).encode())
    assert r.status_code == 403 and r.json()["error"] == "not_member"

    good = build_tx(chain.client_key, "test-chain", "kv", "put", ["forged", "x"], height + 10)
    bad_sig = type(good)(good.body, bytes(64))
    r = post(bad_sig.encode())
    assert r.status_code == 400 and r.json()["error"] == "bad_signature"

    # Another member's signature over this body: valid signature, wrong signer.
    other_sig = sign_tx(suite, chain.admin_key.private_key, good.body).signature
    r = post(type(good)(good.body, other_sig).encode())
    assert r.status_code == 400 and r.json()["error"] == "bad_signature"

    expired = build_tx(chain.client_key, "test-chain", "kv", "put", ["a", "b"], 0)
    r = post(expired.encode())
    assert r.status_code == 400 and r.json()["error"] == "expired"
    too_far = build_tx(chain.client_key, "test-chain", "kv", "put", ["a", "b"], height + 10**6)
    assert post(too_far.encode()).json()["error"] == "expiry_too_far"
    unknown = sign_tx(suite, chain.client_key.private_key,
                      TxBody("test-chain", chain.client_key.public_key, 1, height + 10, "nope", "x", []))
    assert post(unknown.encode()).json()["error"] == "unknown_target"

    r = post(b"\x00" * (2 * 1024 * 1024))
    assert r.status_code == 413

    assert http.get("/txs/nothex").status_code == 400
    assert http.get("/txs/" + "00" * 32).status_code == 404
    assert http.get("/blocks/999999").status_code == 404
    assert http.get("/blocks/0").status_code == 400
    assert http.get("/blocks/" + "9" * 40).status_code == 400
    assert http.get("/blocks/abc").status_code == 422
    assert http.get("/state/kv/zz", params={"encoding": "hex"}).status_code == 400
    r = http.post("/txs", params={"wait": "sometimes"}, content=good.encode())
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"

    # Nothing above reached the mempool or a block; the node still serves and commits.
    after = http.get("/status").json()
    assert after["mempool_size"] == 0
    ok = post(good.encode(), params={"wait": "commit"})
    assert ok.status_code == 200 and ok.json()["status"] == "committed"
    again = post(good.encode())
    assert again.json()["status"] == "committed"  # a replay is recognised, not re-executed
    assert chain.node.is_alive()


def test_verify_ledger_catches_an_edited_state_value(tmp_path: Path) -> None:
    chain = make_chain(tmp_path, interval_ms=100)
    chain.node.start()
    c = Client(chain.node.url)
    c.call(chain.client_key, "kv", "put", ["balance", "100"])
    chain.node.stop()
    assert _verify_ledger(chain.home).returncode == 0
    store = ChainStore(chain.home / "data")  # the engine's table b"v" holds the flat state values
    key = b"\x02kv" + b"balance"
    assert store.kv.get(b"v", key) == b"100"
    store.kv.write([(b"v", key, b"999")])
    store.close()
    out = _verify_ledger(chain.home)
    assert out.returncode == 2 and "state values differ" in out.stderr, out.stderr
