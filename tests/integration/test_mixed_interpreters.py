"""A network whose validators run on different CPython versions (3.11, 3.12, 3.13) commits 1,000 contract calls that
fail in interpreter-specific ways, and every node agrees on every block, receipt status and state root — the
situation of a consortium whose organisations install Qilian on the Python their platform ships."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from qilian.execution.contracts import compute_contract_address
from qilian.sdk.client import Client, build_tx
from qilian.sdk.keys import load_key
from qilian.types.core import compute_tx_hash
from tests.interpreters import get_python

from .netutil import audit, make_net, post_batches, wait_committed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors"))
from block_corpus import PROBE

CALLS = 1000
FAILING = [("empty_max", []), ("bad_int", ["x1"]), ("bad_int", ["١٢٣"]), ("missing_key", []),
           ("missing_index", []), ("divide", [1, 0]), ("negative_shift", []), ("mixed_sort", []),
           ("unicode_tables", ["\U00011f04 ǅ ß"]), ("assert_text", ["\U0001f600"]), ("concat", []),
           ("pop_empty", []), ("list_index", []), ("bad_encoding", ["€"]), ("big_power", []), ("chr_of", [0xD800]),
           ("recurse", [0])]


def test_validators_on_three_cpythons_agree(tmp_path: Path) -> None:
    pythons = {v: get_python(v) for v in ("3.12", "3.13")}
    missing = [v for v, p in pythons.items() if p is None]
    if missing:
        pytest.skip(f"no CPython {', '.join(missing)} venv with the project installed (.ci/run makes them)")
    net = make_net(tmp_path, 4, interval_ms=200)
    net.nodes[2].python = pythons["3.12"]
    net.nodes[3].python = pythons["3.13"]
    net.start_all()
    try:
        versions = [httpx.get(n.url + "/status", timeout=10).json()["python"] for n in net.nodes]
        assert [v.rsplit(".", 1)[0] for v in versions] == ["3.11", "3.11", "3.12", "3.13"], versions
        admin = load_key(net.root / "keys" / "org1-admin.pem")
        c = Client(net.nodes[0].url)
        dep = c.call(admin, "contracts", "deploy", ["probe", PROBE])
        assert dep["receipt"]["status"] == "ok", dep
        addr = compute_contract_address(admin.suite, admin.public_key, "probe")
        tip = dep["height"]
        txs = [build_tx(net.client_key, net.chain_id, addr, m, a, tip + 500, nonce=i)
               for i, (m, a) in enumerate(FAILING[i % len(FAILING)] for i in range(CALLS))]
        hashes = [compute_tx_hash(admin.suite, t.body).hex() for t in txs]
        with httpx.Client(timeout=60) as http:
            for i in range(0, CALLS, 250):  # spread over the nodes of every interpreter
                post_batches(http, net.nodes[(i // 250) % 4].url, txs[i:i + 250], 250)
            wait_committed(http, net.nodes[0].url, set(hashes), 120)
        # Every node is alive (a divergent state root stops a node on purpose) and agrees on everything.
        assert all(n.is_alive() for n in net.nodes), "a node stopped (state diverged?)"
        # One more block, so the last call block's state root is in a header every node signed.
        after = c.call(net.client_key, "kv", "put", ["after", "calls"])["height"]
        net.wait_height(net.nodes, after, 60)
        top = audit(net, [])
        with httpx.Client(timeout=30) as http:
            for h in range(1, top + 1):
                statuses = {tuple(http.get(f"{n.url}/blocks/{h}/tx_hashes").json()["statuses"]) for n in net.nodes}
                assert len(statuses) == 1, f"receipt statuses differ in block {h}"
        failed = sum(1 for h in hashes if c.get_tx(h)["receipt"]["status"] != "ok")
        assert failed >= CALLS * 0.9, f"only {failed} calls failed; the probe is meant to fail"
    finally:
        net.stop_all()
