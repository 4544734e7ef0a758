"""The index in PostgreSQL: for an explorer serving many users, where one SQLite file beside one node stops being
enough — several API processes (or nodes) can read one index, and a separate ``qilian indexer`` process can feed
it from a node's store without touching the node.

Same schema, queries and answers as the SQLite backend (:mod:`qilian.indexer.sql`); only connections and
transactions live here. Each height is one PostgreSQL transaction with the new ``last_height`` in it, so a killed
writer leaves whole heights only. Writers take a transaction-scoped advisory lock first: two writers on one database
(say, a node's embedded indexer and ``qilian indexer``) serialise per height instead of interleaving.

Credentials: put no password in the URL written to ``node.toml``; libpq reads ``PGPASSWORD`` or ``~/.pgpass``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg

from qilian.indexer.sql import POSTGRES, Executor, SqlIndex, compute_schema

CONNECT_TIMEOUT_S: Final = 10
"""Longest wait for a connection to the server."""
READ_TIMEOUT_MS: Final = 5_000
"""Longest one API query may run (``statement_timeout`` of read connections); like SQLite's busy timeout, a
query that cannot answer in time fails rather than piling up requests."""
WRITE_TIMEOUT_MS: Final = 120_000
"""Longest one statement of the writer may run (a height of many thousand rows is one ``executemany``)."""
WRITE_LOCK_KEY: Final = 0x71696C69616E  # "qilian"
"""Advisory lock id that serialises writers (and schema creation) on one database."""
MAX_READ_CONNECTIONS: Final = 64
"""Most read connections one process opens (one per thread that reads; API handlers use few threads)."""


class PostgresIndex(SqlIndex):
    """The index in a PostgreSQL database named by a libpq URL (``postgresql://user@host:port/db``)."""

    def __init__(self, url: str):
        super().__init__(POSTGRES)
        self.url = url
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._w: psycopg.Connection[Any] | None = None
        self._local = threading.local()
        self._readers: list[psycopg.Connection[Any]] = []
        with self._begin_write() as c:
            for stmt in compute_schema(POSTGRES):
                c.execute(stmt)

    def _connect(self, timeout_ms: int) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               options=f"-c statement_timeout={timeout_ms}", application_name="qilian-indexer")

    def _reader(self) -> psycopg.Connection[Any]:
        con: psycopg.Connection[Any] | None = getattr(self._local, "con", None)
        if con is None or con.closed or con.broken:
            with self._lock:
                self._readers = [r for r in self._readers if not r.closed]
                if len(self._readers) >= MAX_READ_CONNECTIONS:
                    raise RuntimeError(f"index: more than {MAX_READ_CONNECTIONS} threads read the PostgreSQL index")
                con = self._connect(READ_TIMEOUT_MS)
                self._readers.append(con)
            self._local.con = con
        return con

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        con = self._reader()
        try:
            return con.execute(sql, tuple(args)).fetchall()
        except psycopg.OperationalError:
            con.close()  # a lost server or a timeout: the next read reconnects
            raise

    @contextmanager
    def _begin_write(self) -> Iterator[Executor]:
        with self._write_lock:
            if self._w is None or self._w.closed or self._w.broken:
                self._w = self._connect(WRITE_TIMEOUT_MS)
            con = self._w
            try:
                with con.transaction(), con.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
                    yield cur
            except psycopg.OperationalError:
                con.close()  # the next write reconnects (the indexer retries the height)
                raise

    def close(self) -> None:
        """Close the writer and every read connection."""
        with self._write_lock:
            if self._w is not None:
                self._w.close()
        with self._lock:
            for r in self._readers:
                r.close()
            self._readers.clear()
