"""The PostgreSQL index backend against a real PostgreSQL server (Debian's package, started in a temp dir): the
same chain indexed into SQLite (embedded in the node) and into PostgreSQL (by ``qilian indexer`` beside the running
node, SIGKILLed mid-run and resumed) gives identical API answers and identical tables — no duplicates, no gaps —
and a node configured with ``[indexer] backend = "postgres"`` serves from it."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from qilian.api.errors import ApiError
from qilian.api.explorer import make_router
from qilian.api.readside import ReadSide
from qilian.bench.pg_server import create_database, get_unavailable_reason, run_pg_server
from qilian.indexer.postgres import PostgresIndex
from qilian.indexer.service import get_index_path
from qilian.indexer.sql import SqlIndex
from qilian.indexer.sqlite import SqliteIndex
from qilian.node.config import load_config, save_config
from qilian.node.node import Node
from qilian.sdk.client import Client
from qilian.storage.store import ChainStore

from .conftest import make_chain

_reason = get_unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")

COUNTER = '''
total = Variable(default=0)


@export
def add(n: int):
    total.set(total.get() + n)
    emit("Added", {"n": n, "total": total.get()})
    return total.get()
'''


def _indexer_proc(home: Path, url: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "qilian.cli.main", "indexer", "--home", str(home),
                             "--postgres", url, *extra], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _pg_height(url: str) -> int:
    ix = PostgresIndex(url)
    try:
        return ix.get_last_height()
    finally:
        ix.close()


def _wait(cond: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _api(node: Node, index: SqlIndex) -> TestClient:
    app = FastAPI()

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=exc.status)

    app.include_router(make_router(node, ReadSide(node.store, node.suite, node.genesis), index))
    return TestClient(app)


def _get_all_pages(http: TestClient, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of a paginated route (each page must answer 200)."""
    pages, cursor = [], None
    for _ in range(200):
        r = http.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, (path, r.text)
        pages.append(r.json())
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError(f"{path}: more than 200 pages")


def test_postgres_backend_matches_sqlite_and_resumes_after_sigkill(tmp_path: Path) -> None:
    with run_pg_server() as pg:
        chain = make_chain(tmp_path, interval_ms=100)
        home = chain.home
        follow_url = create_database(pg, "follow")
        log = tmp_path / "indexer.log"
        chain.node.start()
        c = Client(chain.node.url)
        me = chain.client_key.address.hex()
        follower = _indexer_proc(home, follow_url, log, "--poll", "0.1")
        try:
            dep = c.call(chain.admin_key, "contracts", "deploy", ["counter", COUNTER])
            assert dep["receipt"]["status"] == "ok", dep
            addr = dep["receipt"]["result"]
            for i in range(12):
                c.call(chain.client_key, "kv", "put", [f"k{i}", f"v{i}"])
                c.call(chain.client_key, addr, "add", [i])
            # The follower indexes beside the running node; kill it while the node keeps committing.
            _wait(lambda: _pg_height(follow_url) >= 8, "the follower to index 8 heights")
            follower.send_signal(signal.SIGKILL)
            follower.wait(10)
            killed_at = _pg_height(follow_url)
            up = c.call(chain.admin_key, "contracts", "upgrade", [addr, COUNTER + "\n# v2\n"])
            assert up["receipt"]["status"] == "ok", up
            dep2 = c.call(chain.admin_key, "contracts", "deploy", ["Counter_B", COUNTER])
            for i in range(8):
                c.call(chain.client_key, "kv", "put", [f"later{i}", "x"])
                c.call(chain.client_key, dep2["receipt"]["result"], "add", [i])
            tip_seen = c.call(chain.client_key, "kv", "put", ["last", "x"])["height"]
            assert killed_at < tip_seen
            _wait(lambda: httpx.get(chain.node.url + "/indexer").json()["indexed_height"] >= tip_seen,
                  "the embedded SQLite indexer")
        finally:
            if follower.poll() is None:
                follower.kill()
            chain.node.stop()

        # Resume over the stopped node's store: whole heights only, none twice, none missing.
        done = subprocess.run([sys.executable, "-m", "qilian.cli.main", "indexer", "--home", str(home),
                               "--postgres", follow_url, "--once"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        # The node may have committed a height after its embedded indexer stopped: finish the SQLite index with the
        # same command (no --postgres: the node's configured backend).
        done = subprocess.run([sys.executable, "-m", "qilian.cli.main", "indexer", "--home", str(home), "--once"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

        store = ChainStore(home / "data", readonly=True)
        try:
            tip = store.get_tip().height
            expected_txs = sum(len(store.get_block(h).txs) for h in range(1, tip + 1))  # type: ignore[union-attr]
        finally:
            store.close()
        sq = SqliteIndex(get_index_path(home))
        pgx = PostgresIndex(follow_url)
        try:
            assert sq.get_last_height() == pgx.get_last_height() == tip
            heights = [r[1] for r in pgx.iter_dump() if r[0] == "blocks"]
            assert heights == list(range(1, tip + 1))
            assert pgx.get_tx_count() == expected_txs == 44  # deploy, 12 puts + 12 adds, upgrade, deploy, 8 + 8, last
            assert pgx.get_missing_heights(tip, 10) == []
            assert list(pgx.iter_dump()) == list(sq.iter_dump())  # the same rows, byte for byte

            # The same API answers from both backends (one stopped node, two indexes).
            node = Node(load_config(home))
            try:
                a, b = _api(node, sq), _api(node, pgx)
                proposer = chain.genesis.validators.validators[0].address.hex()
                some_tx = b.get(f"/accounts/{me}/txs").json()["items"][3]["hash"]
                block_id = next(r for r in pgx.iter_dump() if r[0] == "blocks" and r[1] == 5)[2]
                paged = [("/contracts", {"limit": 2}), (f"/accounts/{me}/txs", {"limit": 7}),
                         (f"/accounts/{addr}/txs", {"limit": 5}), ("/accounts/kv/txs", {"limit": 9}),
                         ("/events", {"source": addr, "limit": 4}), ("/events", {"source": "kv", "name": "put"}),
                         ("/events", {"from_height": tip // 2, "limit": 6}),
                         (f"/proposers/{proposer}/blocks", {"limit": 10})]
                for path, params in paged:
                    pa, pb = _get_all_pages(a, path, params), _get_all_pages(b, path, params)
                    assert pa == pb, path
                    assert pa[0]["items"], path
                for q in (str(tip), some_tx, block_id, me, addr, "count", "COUNT", "counter_", "c", "kv", "%", "_",
                          "ev", "nothing-here", proposer):
                    ra, rb = a.get("/search", params={"q": q}), b.get("/search", params={"q": q})
                    assert ra.status_code == rb.status_code == 200 and ra.json() == rb.json(), q
                assert len(b.get("/search", params={"q": "count"}).json()["results"]) == 2  # case-insensitive
                for path in (f"/contracts/{addr}/versions", "/indexer", "/contracts/nope/versions",
                             "/events?cursor=bad"):
                    assert a.get(path).json() == b.get(path).json(), path
                contracts_sqlite = a.get("/contracts").json()["items"]
            finally:
                node.store.close()
        finally:
            sq.close()
            pgx.close()

        # A node configured with the PostgreSQL backend indexes into it and serves from it.
        node_url = create_database(pg, "node")
        save_config(dataclasses.replace(load_config(home), indexer_backend="postgres", indexer_url=node_url))
        assert load_config(home).indexer_backend == "postgres"
        chain.node.start()
        try:
            http = httpx.Client(base_url=chain.node.url, timeout=15)
            _wait(lambda: http.get("/indexer").json()["indexed_height"] >= tip, "the node's PostgreSQL index")
            assert http.get("/contracts").json()["items"] == contracts_sqlite
        finally:
            chain.node.stop()
        assert _pg_height(node_url) >= tip
