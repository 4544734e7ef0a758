"""The read side, the indexer and monitoring against a real node: paginated index routes, search, idempotent and
resumable indexing with gap repair, /metrics, /health, /ready and the offline /docs and /explorer assets."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from qilian.bench.votes_bench import parse_metrics
from qilian.crypto import get_suite
from qilian.indexer.service import Indexer, get_index_path
from qilian.indexer.sqlite import SqliteIndex
from qilian.sdk.client import Client
from qilian.sdk.verify import verify_state_response, verify_tx_response
from qilian.storage.store import ChainStore

from .conftest import make_chain

COUNTER = '''
total = Variable(default=0)


@export
def add(n: int):
    total.set(total.get() + n)
    emit("Added", {"n": n, "total": total.get()})
    return total.get()


@export
def get():
    return total.get()
'''


def _wait_indexed(http: httpx.Client, height: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http.get("/indexer").json()["indexed_height"] >= height:
            return
        time.sleep(0.1)
    raise AssertionError(f"index did not reach {height}: {http.get('/indexer').json()}")


def test_index_routes_metrics_and_resume(tmp_path: Path) -> None:
    chain = make_chain(tmp_path, interval_ms=100)
    chain.node.start()
    http = httpx.Client(base_url=chain.node.url, timeout=15)
    c = Client(chain.node.url)
    suite = get_suite("ed25519")
    me = chain.client_key.address.hex()
    try:
        puts = [c.call(chain.client_key, "kv", "put", [f"k{i}", f"v{i}"]) for i in range(5)]
        dep = c.call(chain.admin_key, "contracts", "deploy", ["counter", COUNTER])
        assert dep["receipt"]["status"] == "ok", dep
        addr = dep["receipt"]["result"]
        for n in (3, 4):
            assert c.call(chain.client_key, addr, "add", [n])["receipt"]["status"] == "ok"
        up = c.call(chain.admin_key, "contracts", "upgrade", [addr, COUNTER + "\n# v2\n"])
        assert up["receipt"]["status"] == "ok", up
        tip = c.call(chain.client_key, "kv", "put", ["last", "x"])["height"]
        # The block after the last transactions commits their results (its header carries their receipts root);
        # then the chain idles. Wait for it too, so the newest-first listings below do not race it.
        head = tip + 1
        _wait_indexed(http, head)

        # Proof-carrying routes keep their shape and still verify with the SDK (built by the shared builders).
        tx = http.get(f"/txs/{puts[0]['hash']}").json()
        assert verify_tx_response(chain.genesis, tx).height == puts[0]["height"]
        st = http.get("/state/kv/k1").json()
        assert verify_state_response(chain.genesis, st) == b"v1"

        # Accounts: newest first, keyset pages that neither skip nor repeat.
        seen: list[str] = []
        cursor = None
        while True:
            page = http.get(f"/accounts/{me}/txs", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            doc = page.json()
            seen += [t["hash"] for t in doc["items"]]
            cursor = doc["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 8  # 5 puts, 2 adds, 1 last put
        assert seen[-1] == puts[0]["hash"]
        by_contract = http.get(f"/accounts/{addr}/txs").json()["items"]
        assert [t["method"] for t in by_contract] == ["upgrade", "add", "add", "deploy"]

        contracts = http.get("/contracts").json()["items"]
        mine = next(x for x in contracts if x["address"] == addr)
        assert mine["name"] == "counter" and mine["version"] == 2
        assert any(x["address"] == "evidence" for x in contracts)
        versions = http.get(f"/contracts/{addr}/versions").json()["versions"]
        assert [v["version"] for v in versions] == [1, 2] and versions[1]["source"].endswith("# v2\n")

        evs = http.get("/events", params={"source": addr, "name": "Added"}).json()["items"]
        assert [e["data"]["total"] for e in evs] == [3, 7]
        later = http.get("/events", params={"source": addr, "from_height": evs[1]["height"]}).json()["items"]
        assert [e["data"]["n"] for e in later] == [4]
        assert http.get("/events", params={"source": "kv", "name": "put", "limit": 100}).json()["items"]

        # Search: height, tx hash, block id, address, contract name.
        def kinds(q: str) -> set[str]:
            r = http.get("/search", params={"q": q})
            assert r.status_code == 200, r.text
            return {x["kind"] for x in r.json()["results"]}

        assert kinds(str(tip)) == {"block"}
        assert "tx" in kinds(puts[1]["hash"])
        block_id = http.get(f"/blocks/{tip}").json()["header"]["block_id"]
        assert "block" in kinds(block_id)
        assert "account" in kinds(me)
        assert "contract" in kinds(addr) and "contract" in kinds("count")
        blocks = http.get("/blocks", params={"limit": 3}).json()
        assert [b["height"] for b in blocks["items"]] == [head, head - 1, head - 2]
        vals = http.get("/validators").json()["validators"]
        assert vals and vals[0]["last_signed"] == head and vals[0]["organisation"] == "org1"

        # Bad input gets a named 4xx.
        for path, code in (("/accounts/a-b/txs", "bad_address"), ("/accounts/" + me + "/txs?cursor=x", "bad_cursor"),
                           ("/events?limit=1000", "invalid_request"), ("/search?q=", "invalid_request"),
                           ("/blocks?before=0", "invalid_request")):
            r = http.get(path)
            assert 400 <= r.status_code < 500 and r.json()["error"] == code, (path, r.text)

        # Monitoring.
        m = http.get("/metrics")
        assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
        for name in ("qilian_height", "qilian_mempool_size", "qilian_block_interval_seconds_bucket",
                     "qilian_rounds_per_height_bucket", 'qilian_block_phase_seconds_count{phase="execute"}',
                     'qilian_api_request_seconds_count{method="GET",route="/txs/{tx_hash}",status="200"}',
                     "qilian_indexed_height", "qilian_peers_connected", 'qilian_wal_fsync_seconds_bucket{le="+Inf"}',
                     "qilian_wal_fsync_max_seconds", 'qilian_memory_bytes{part="mempool"}',
                     'qilian_memory_bytes{part="node_cache"}', 'qilian_memory_bytes{part="rocksdb_memtables"}',
                     'qilian_memory_bytes{part="rocksdb_block_cache"}', "qilian_signature_cache_entries",
                     'qilian_gc_seconds_total{generation="2"}'):
            assert name in m.text, name
        # The node configured its collector at start-up, which runs (and times) one whole-heap collection.
        full_gcs = next(float(line.split()[1]) for line in m.text.splitlines()
                        if line.startswith('qilian_gc_collections_total{generation="2"}'))
        assert full_gcs >= 1
        # Every decided height had a prevote and a precommit quorum; their delays are observed (bench votes).
        quorums = parse_metrics(m.text)
        for vtype in ("prevote", "precommit"):
            inf = quorums[("qilian_vote_quorum_seconds_bucket", f'le="+Inf",type="{vtype}"')]
            assert inf >= head - 1, (vtype, inf, head)
        fsyncs = next(float(line.split()[1]) for line in m.text.splitlines()
                      if line.startswith("qilian_wal_fsync_seconds_count"))
        assert fsyncs >= 1  # every height starts with a synced WAL marker
        assert http.get("/health").json()["status"] == "ok"
        ready = http.get("/ready")
        assert ready.status_code == 200 and ready.json()["synced"], ready.text
        docs = http.get("/docs")
        assert docs.status_code == 200 and "/static/swagger/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower()
        assert http.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
        assert http.get("/explorer/").status_code == 200
        assert http.get("/explorer", follow_redirects=False).status_code in (307, 308)
    finally:
        chain.node.stop()

    # Offline: the same indexer over the stopped node's store. Re-indexing a height changes nothing; a lost row
    # is found by the gap detector and restored; a fresh index resumes to the same content.
    store = ChainStore(chain.home / "data")
    try:
        index = SqliteIndex(get_index_path(chain.home))
        ix = Indexer(store, suite, index)
        assert ix.process_all().indexed == 0  # the embedded indexer was complete
        before = list(index.iter_dump())
        for h in (1, tip - 2, tip):
            ix.process_height(h, advance=False)
        assert list(index.iter_dump()) == before
        con = sqlite3.connect(index.path)
        with con:
            con.execute("DELETE FROM blocks WHERE height=?", (tip - 3,))
            con.execute("DELETE FROM txs WHERE height=?", (tip - 3,))
        con.close()
        assert list(index.iter_dump()) != before
        assert ix.process_pass().repaired == 1
        assert list(index.iter_dump()) == before
        index.close()

        fresh = SqliteIndex(tmp_path / "fresh.sqlite")
        fx = Indexer(store, suite, fresh)
        fx.process_pass(max_blocks=3)  # stop part-way, as if killed between heights
        assert fresh.get_last_height() == 3
        fresh.close()
        fresh = SqliteIndex(tmp_path / "fresh.sqlite")
        Indexer(store, suite, fresh).process_all()
        assert list(fresh.iter_dump()) == before
        fresh.close()
    finally:
        store.close()


def test_a_node_without_an_index_serves_the_read_side(tmp_path: Path) -> None:
    """``[indexer] backend = "off"`` (a validator serving no explorer): nothing is indexed, the index routes answer
    503 ``index_off`` naming the setting, and blocks, transactions and proofs are served as before."""
    import dataclasses

    from qilian.node.config import load_config, save_config

    chain = make_chain(tmp_path, interval_ms=100)
    save_config(dataclasses.replace(load_config(chain.home), indexer_backend="off"))
    chain.node.start()
    http = httpx.Client(base_url=chain.node.url, timeout=15)
    try:
        put = Client(chain.node.url).call(chain.client_key, "kv", "put", ["k", "v"])
        assert put["receipt"]["status"] == "ok", put
        for route in ("/indexer", "/contracts", f"/accounts/{chain.client_key.address.hex()}/txs", "/search?q=k"):
            r = http.get(route)
            assert r.status_code == 503 and r.json()["error"] == "index_off", (route, r.text)
            assert "[indexer] backend" in r.json()["message"]
        deadline = time.monotonic() + 20  # the receipt is proven once the next block commits
        while http.get("/status").json()["height"] <= put["height"]:
            assert time.monotonic() < deadline, "no block after the put's within 20 s"
            time.sleep(0.1)
        tx = http.get(f"/txs/{put['hash']}")
        assert tx.status_code == 200
        assert verify_tx_response(chain.genesis, tx.json(), tx_hash=bytes.fromhex(put["hash"])).height == put["height"]
        assert http.get("/blocks").status_code == 200
        assert "qilian_indexed_height" not in http.get("/metrics").text
        assert not get_index_path(chain.home).exists()
    finally:
        chain.node.stop()
