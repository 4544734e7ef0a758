"""The index in SQLite beside the node's data (the default backend), derived from committed blocks only.

Why SQLite: the chain store answers by key (height, tx hash, state key); an explorer needs the other
directions — a sender's transactions, a contract's events, a proposer's blocks, contracts by name — with keyset
pagination. These are secondary indexes that can always be rebuilt from the block store, so they live in their own
file: losing or deleting it costs a re-index, never chain data. Schema and queries: :mod:`qilian.indexer.sql`
(shared with the PostgreSQL backend).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from qilian.indexer.sql import (
    DEFAULT_PAGE,
    MAX_PAGE,
    MAX_SEARCH_RESULTS,
    SQLITE,
    ContractVersion,
    EventRow,
    Executor,
    HeightRows,
    IndexQueryError,
    SqlIndex,
    TxRow,
    compute_schema,
    decode_cursor,
    encode_cursor,
)

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "MAX_SEARCH_RESULTS", "ContractVersion", "EventRow", "HeightRows",
           "IndexQueryError", "SqliteIndex", "TxRow", "decode_cursor", "encode_cursor"]

BUSY_TIMEOUT_S: Final = 5.0
"""How long a reader waits for the writer's lock before failing."""
WRITER_CACHE_KIB: Final = 65_536
"""Page cache of the writer connection (SQLite's default is 2 MiB). Transaction hashes key the largest table and
its indexes at random, so past a few hundred thousand rows nearly every insert touched a page that had fallen out
of a 2 MiB cache; 64 MiB keeps the B-trees' upper levels and recent leaves in memory (docs/benchmarks.md)."""


class SqliteIndex(SqlIndex):
    """The index file. One writer thread (the indexer) and any number of readers (API handlers); WAL mode lets
    readers see the last committed height while the writer works."""

    def __init__(self, path: Path):
        super().__init__(SQLITE)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write_lock = threading.Lock()
        self._w = self._connect()
        self._w.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        with self._begin_write() as c:
            for stmt in compute_schema(SQLITE):
                c.execute(stmt)
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, check_same_thread=False,
                              isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    @property
    def _r(self) -> sqlite3.Connection:
        """A read connection per thread (sqlite3 connections are not shared across threads for reads here)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.execute("PRAGMA query_only=ON")
            self._local.con = con
        return con

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._r.execute(sql, tuple(args)).fetchall()

    @contextmanager
    def _begin_write(self) -> Iterator[Executor]:
        with self._write_lock:
            c = self._w
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def close(self) -> None:
        """Close the writer connection (readers close with their threads)."""
        self._w.close()
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
