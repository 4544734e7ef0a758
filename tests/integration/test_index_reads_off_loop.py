"""Index queries run off the node's event loop: with the PostgreSQL index's ``contract_versions`` table locked by
another session (as a migration or a ``VACUUM FULL`` would), more ``/contracts`` requests than the index pool has
threads hang in PostgreSQL — and meanwhile ``/status`` and ``/blocks/1``, which the event loop answers, still
answer at once. When the lock goes, every blocked request completes. Real node process, real PostgreSQL server
(Debian's package, started in a temp dir)."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import httpx
import pytest

from qilian.api.explorer import INDEX_READ_THREADS
from qilian.bench.pg_server import create_database, get_unavailable_reason, run_pg_server
from qilian.node.config import load_config, save_config
from qilian.sdk.client import Client

from .conftest import make_chain

_reason = get_unavailable_reason()
pytestmark = [pytest.mark.skipif(_reason is not None, reason=_reason or ""), pytest.mark.timeout(180)]

LOOP_ANSWER_S = 1.0
"""Most a loop-served route may take while the index is stuck (it answers in milliseconds when the loop is free;
an index query on the loop would hold it until PostgreSQL's 5 s statement timeout)."""


def _until(cond: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_status_answers_while_index_queries_hang(tmp_path: Path) -> None:
    import psycopg

    with run_pg_server() as server:
        url = create_database(server, "ix")
        chain = make_chain(tmp_path, interval_ms=100)
        save_config(dataclasses.replace(load_config(chain.home), indexer_backend="postgres", indexer_url=url))
        chain.node.start()
        try:
            http = httpx.Client(base_url=chain.node.url, timeout=30)
            h = Client(chain.node.url).call(chain.client_key, "kv", "put", ["k", "v"])["height"]
            _until(lambda: http.get("/indexer").json()["indexed_height"] >= h, "the index", 30)
            assert http.get("/contracts").status_code == 200

            with psycopg.connect(url, autocommit=True) as locker, psycopg.connect(url, autocommit=True) as watch:
                locker.execute("BEGIN")
                locker.execute("LOCK TABLE contract_versions IN ACCESS EXCLUSIVE MODE")
                answers: list[int] = []
                slow = [threading.Thread(target=lambda: answers.append(http.get("/contracts").status_code))
                        for _ in range(INDEX_READ_THREADS + 2)]  # more than the pool: some queue behind it
                for t in slow:
                    t.start()

                def blocked() -> int:
                    row = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                        "'qilian-indexer' AND wait_event_type = 'Lock' AND query LIKE "
                                        "'%contract_versions%' AND query NOT LIKE 'DELETE%'").fetchone()
                    return int(row[0]) if row else 0

                # one query inside PostgreSQL waiting for the lock, then every pool thread: the loop answers
                for stuck in (1, INDEX_READ_THREADS):
                    _until(lambda n=stuck: blocked() >= n, f"{stuck} index queries to block on the lock", 10)
                    for path in ("/status", "/blocks/1"):
                        t0 = time.monotonic()
                        try:
                            code = httpx.get(chain.node.url + path, timeout=LOOP_ANSWER_S).status_code
                        except httpx.TimeoutException:
                            code = 0
                        took = time.monotonic() - t0
                        assert code == 200 and took < LOOP_ANSWER_S, (path, stuck, code, took)
                assert not answers, "a /contracts request finished while its table was locked"
                locker.execute("ROLLBACK")
            for t in slow:
                t.join(30)
            assert answers == [200] * len(slow), answers
        finally:
            chain.node.stop()
