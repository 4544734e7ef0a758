"""The index schema and queries, shared by both backends (SQLite beside the node, PostgreSQL for an explorer
serving many users).

Why one module: the two backends must give the same answers — the API's pages, cursors and search hits may not
depend on where the index lives. So the schema, every query and the write of a height are written once, in the
SQL both engines accept; a :class:`Dialect` names the few differences (parameter marker, integer and text types,
case-insensitive LIKE). A backend supplies connections and transactions only.

Every height is written in ONE transaction together with the new ``last_height``: after a kill the index holds
whole heights only and resumes after the last one. Writing a height first deletes whatever that height wrote
before, so re-indexing a height leaves the database equal in content (idempotent).
"""

from __future__ import annotations

import itertools
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

MAX_PAGE: Final = 100
"""Most rows in one page of any index query."""
DEFAULT_PAGE: Final = 20
"""Rows in a page when the client does not say."""
MAX_SEARCH_RESULTS: Final = 20
"""Most hits one search answers."""
TOP_HEIGHT: Final = 2**62
"""Above every real height: the start of a newest-first page (fits a signed 64-bit column in both engines)."""
TOP_IDX: Final = 2**31
"""Above every position in a block."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL of the two engines."""

    name: str
    """``sqlite`` or ``postgres``."""
    param: str
    """Parameter marker (queries are written with ``?``)."""
    int_type: str
    """Integer column type: 64-bit in both (SQLite's INTEGER is; PostgreSQL's is 32-bit, so BIGINT)."""
    text_type: str
    """Text column type. PostgreSQL's is byte-order collated ("C") so that ORDER BY and prefix LIKE match
    SQLite's BINARY collation (and prefix LIKE can use the index)."""
    like: str
    """Case-insensitive (ASCII) LIKE: SQLite's LIKE is, PostgreSQL's ILIKE is."""


SQLITE: Final = Dialect("sqlite", "?", "INTEGER", "TEXT", "LIKE")
POSTGRES: Final = Dialect("postgres", "%s", "BIGINT", 'TEXT COLLATE "C"', "ILIKE")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key {T} PRIMARY KEY, value {T} NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
  height {I} PRIMARY KEY, block_id {T} NOT NULL, time_ms {I} NOT NULL, proposer {T} NOT NULL,
  tx_count {I} NOT NULL, round {I} NOT NULL, signers {I} NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_by_proposer ON blocks (proposer, height);
CREATE INDEX IF NOT EXISTS blocks_by_id ON blocks (block_id);
CREATE TABLE IF NOT EXISTS txs (
  hash {T} PRIMARY KEY, height {I} NOT NULL, idx {I} NOT NULL, sender {T} NOT NULL,
  target {T} NOT NULL, method {T} NOT NULL, status {T} NOT NULL, error {T} NOT NULL,
  fuel_used {I} NOT NULL, time_ms {I} NOT NULL);
CREATE INDEX IF NOT EXISTS txs_by_height ON txs (height, idx);
CREATE INDEX IF NOT EXISTS txs_by_sender ON txs (sender, height, idx);
CREATE INDEX IF NOT EXISTS txs_by_target ON txs (target, height, idx);
CREATE TABLE IF NOT EXISTS events (
  height {I} NOT NULL, tx_idx {I} NOT NULL, ev_idx {I} NOT NULL, tx_hash {T} NOT NULL,
  source {T} NOT NULL, name {T} NOT NULL, data {T} NOT NULL, PRIMARY KEY (height, tx_idx, ev_idx));
CREATE INDEX IF NOT EXISTS events_by_source ON events (source, name, height, tx_idx, ev_idx);
CREATE INDEX IF NOT EXISTS events_by_source_height ON events (source, height, tx_idx, ev_idx);
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, height, tx_idx, ev_idx);
CREATE TABLE IF NOT EXISTS contract_versions (
  address {T} NOT NULL, version {I} NOT NULL, name {T} NOT NULL, deployer {T} NOT NULL,
  height {I} NOT NULL, idx {I} NOT NULL, tx_hash {T} NOT NULL, source {T} NOT NULL,
  PRIMARY KEY (address, version));
CREATE INDEX IF NOT EXISTS contract_versions_by_height ON contract_versions (height, idx);
CREATE INDEX IF NOT EXISTS contract_versions_by_name ON contract_versions (name);
"""

DUMP_ORDER: Final = (("meta", "key"), ("blocks", "height"), ("txs", "hash"),
                     ("events", "height, tx_idx, ev_idx"), ("contract_versions", "address, version"))
"""Every table with a total order of its rows (dumps compare across backends and runs)."""


def compute_schema(d: Dialect) -> list[str]:
    """The schema's statements in a dialect (one statement each: PostgreSQL's driver runs one at a time)."""
    text = _SCHEMA.format(I=d.int_type, T=d.text_type)
    return [s.strip() for s in text.split(";") if s.strip()]


class IndexQueryError(Exception):
    """A bad query to the index (a malformed cursor)."""


@dataclass(frozen=True, slots=True)
class TxRow:
    """A transaction as indexed."""

    hash: str
    """Transaction hash (hex)."""
    height: int
    """Block height."""
    idx: int
    """Position in the block."""
    sender: str
    """Sender's address (hex)."""
    target: str
    """``body.to``: a module name or contract address; for deployments the new contract's address."""
    method: str
    """Method called."""
    status: str
    """Receipt status name (ok, failed, out_of_fuel)."""
    error: str
    """Receipt error text (empty on success)."""
    fuel_used: int
    """Fuel the call used."""
    time_ms: int
    """Block time."""


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event as indexed."""

    height: int
    """Block height."""
    tx_idx: int
    """Position of the emitting transaction in its block."""
    ev_idx: int
    """Position of the event in the receipt."""
    tx_hash: str
    """Emitting transaction (hex)."""
    source: str
    """Module or contract that emitted it."""
    name: str
    """Event name."""
    data: Any
    """Payload in the API's JSON form of codec values."""


@dataclass(frozen=True, slots=True)
class ContractVersion:
    """One deployed version of a contract."""

    address: str
    """Contract address (40 hex digits, or a system contract's name)."""
    version: int
    """1 at deployment, +1 per upgrade."""
    name: str
    """Name given at deployment."""
    deployer: str
    """Address of the deploying (or upgrading) key."""
    height: int
    """Height of the deployment or upgrade (0: genesis)."""
    idx: int
    """Position of that transaction in its block."""
    tx_hash: str
    """The transaction (empty at genesis)."""
    source: str
    """Python source of this version."""


@dataclass(frozen=True, slots=True)
class HeightRows:
    """Everything one height contributes to the index (built by :mod:`qilian.indexer.service`)."""

    height: int
    """Height."""
    block: tuple[Any, ...]
    """(block_id, time_ms, proposer, tx_count, round, signers)."""
    txs: tuple[TxRow, ...]
    """Its transactions."""
    events: tuple[EventRow, ...]
    """Its events."""
    contracts: tuple[ContractVersion, ...]
    """Deployments and upgrades in it; ``version`` 0 means "next after the latest indexed"."""


def encode_cursor(height: int, idx: int, sub: int = 0) -> str:
    """An opaque-looking but readable keyset cursor: the position of the last row of a page."""
    return f"{height}.{idx}.{sub}"


def decode_cursor(cursor: str | None) -> tuple[int, int, int] | None:
    """Parse a cursor; raises IndexQueryError on a malformed one."""
    if cursor is None or cursor == "":
        return None
    parts = cursor.split(".")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 20 for p in parts):
        raise IndexQueryError(f"cursor {cursor[:40]!r} is not a cursor this API returned")
    return int(parts[0]), int(parts[1]), int(parts[2])


class Executor(Protocol):
    """What a write transaction offers the shared code (a ``sqlite3.Connection`` or a ``psycopg.Cursor``)."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: Any, params_seq: Any, /) -> Any: ...


_UPSERT_TX: Final = ("INSERT INTO txs VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (hash) DO UPDATE SET "
                     "height=excluded.height, idx=excluded.idx, sender=excluded.sender, target=excluded.target, "
                     "method=excluded.method, status=excluded.status, error=excluded.error, "
                     "fuel_used=excluded.fuel_used, time_ms=excluded.time_ms")
_UPSERT_CONTRACT: Final = ("INSERT INTO contract_versions VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (address, version) "
                           "DO UPDATE SET name=excluded.name, deployer=excluded.deployer, height=excluded.height, "
                           "idx=excluded.idx, tx_hash=excluded.tx_hash, source=excluded.source")
_UPSERT_META: Final = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value"


class SqlIndex(ABC):
    """The index over some SQL engine: one writer (the indexer) and any number of readers (API handlers), each
    reader seeing whole committed heights only."""

    dialect: Dialect

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._sql_cache: dict[str, str] = {}

    # -- what a backend provides -------------------------------------------------------------------------

    @abstractmethod
    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (already in the dialect) on this thread's read connection."""

    @abstractmethod
    def _begin_write(self) -> AbstractContextManager[Executor]:
        """A write transaction: committed when the block exits normally, rolled back otherwise."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    # -- shared ------------------------------------------------------------------------------------------

    def _q(self, sql: str) -> str:
        """``sql`` (written with ``?``) in this dialect."""
        out = self._sql_cache.get(sql)
        if out is None:
            out = self._sql_cache[sql] = sql.replace("?", self.dialect.param)
        return out

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._fetch(self._q(sql), args)

    def _one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self._rows(sql, args)
        return rows[0] if rows else None

    # -- writes ------------------------------------------------------------------------------------------

    def get_last_height(self) -> int:
        """The highest height indexed together with every height below it (0: none)."""
        row = self._one("SELECT value FROM meta WHERE key='last_height'")
        return int(row[0]) if row else 0

    def process_height(self, rows: HeightRows, advance: bool) -> None:
        """Write one height in one transaction: delete what it wrote before, insert its rows, and (when
        ``advance``) record it as the last indexed height — so a kill leaves whole heights only."""
        self.process_heights([rows], advance)

    def process_heights(self, batch: Sequence[HeightRows], advance: bool) -> None:
        """Write several heights in one transaction (a catch-up batch: one commit instead of one per height).
        Still whole heights only: a kill loses the batch, and ``last_height`` (when ``advance``) names its last
        height, so the heights must be consecutive."""
        if advance:
            assert all(b.height == a.height + 1 for a, b in itertools.pairwise(batch)), "heights not consecutive"
        with self._begin_write() as c:
            for rows in batch:
                self._write_height(c, rows)
            if advance and batch:
                c.execute(self._q(_UPSERT_META), ("last_height", str(batch[-1].height)))

    def _write_height(self, c: Executor, rows: HeightRows) -> None:
        """One height's rows inside an open write transaction: what the height wrote before is deleted first, so
        writing a height twice leaves the index unchanged."""
        h, q = rows.height, self._q
        for table in ("blocks", "txs", "events", "contract_versions"):
            c.execute(q(f"DELETE FROM {table} WHERE height=?"), (h,))
        if h > 0:
            c.execute(q("INSERT INTO blocks VALUES (?,?,?,?,?,?,?)"), (h, *rows.block))
        if rows.txs:
            c.executemany(q(_UPSERT_TX), [(t.hash, t.height, t.idx, t.sender, t.target, t.method, t.status,
                                           t.error, t.fuel_used, t.time_ms) for t in rows.txs])
        if rows.events:
            c.executemany(q("INSERT INTO events VALUES (?,?,?,?,?,?,?)"),
                          [(e.height, e.tx_idx, e.ev_idx, e.tx_hash, e.source, e.name,
                            json.dumps(e.data, sort_keys=True, separators=(",", ":"))) for e in rows.events])
        for cv in rows.contracts:
            version = cv.version
            if version == 0:
                prev = c.execute(q("SELECT COALESCE(MAX(version), 0) FROM contract_versions WHERE address=? AND "
                                   "(height < ? OR (height = ? AND idx < ?))"),
                                 (cv.address, cv.height, cv.height, cv.idx)).fetchone()
                version = int(prev[0]) + 1
            name = cv.name
            if not name:
                first = c.execute(q("SELECT name FROM contract_versions WHERE address=? AND version=1"),
                                  (cv.address,)).fetchone()
                name = first[0] if first else ""
            c.execute(q(_UPSERT_CONTRACT),
                      (cv.address, version, name, cv.deployer, cv.height, cv.idx, cv.tx_hash, cv.source))

    def get_missing_heights(self, upto: int, limit: int, first: int = 1) -> list[int]:
        """Heights in first..upto with no block row (a gap: a row lost or deleted), at most ``limit`` (``first``:
        the first height the node's store holds — above 1 on a node that joined by state sync)."""
        if upto < first:
            return []
        row = self._one("SELECT COUNT(*) FROM blocks WHERE height BETWEEN ? AND ?", (first, upto))
        if row is None or int(row[0]) >= upto - first + 1:
            return []
        missing: list[int] = []
        expect = first
        for (h,) in self._rows("SELECT height FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height",
                               (first, upto)):
            while expect < h and len(missing) < limit:
                missing.append(expect)
                expect += 1
            expect = h + 1
            if len(missing) >= limit:
                return missing
        while expect <= upto and len(missing) < limit:
            missing.append(expect)
            expect += 1
        return missing

    # -- reads -------------------------------------------------------------------------------------------

    def get_txs_of(self, address: str, cursor: str | None, limit: int) -> tuple[list[TxRow], str | None]:
        """Transactions sent by ``address`` or targeting it (a contract), newest first, keyset-paginated."""
        limit = _page(limit)
        pos = decode_cursor(cursor)
        h, i = (pos[0], pos[1]) if pos else (TOP_HEIGHT, TOP_IDX)
        # Each side is cut to one page before the union: a hot account's union never sorts all its rows.
        sql = ("SELECT * FROM (SELECT * FROM txs WHERE sender=? AND (height < ? OR (height = ? AND idx < ?)) "
               "ORDER BY height DESC, idx DESC LIMIT ?) AS s "
               "UNION SELECT * FROM (SELECT * FROM txs WHERE target=? AND (height < ? OR (height = ? AND idx < ?)) "
               "ORDER BY height DESC, idx DESC LIMIT ?) AS t "
               "ORDER BY height DESC, idx DESC LIMIT ?")
        n = limit + 1
        rows = [TxRow(*r) for r in self._rows(sql, (address, h, h, i, n, address, h, h, i, n, n))]
        nxt = encode_cursor(rows[limit - 1].height, rows[limit - 1].idx) if len(rows) > limit else None
        return rows[:limit], nxt

    def get_events(self, source: str | None, name: str | None, from_height: int, cursor: str | None,
                   limit: int) -> tuple[list[EventRow], str | None]:
        """Events, oldest first from ``from_height``, optionally of one source and/or name."""
        limit = _page(limit)
        pos = decode_cursor(cursor) or (from_height, -1, -1)
        where = ["(height > ? OR (height = ? AND (tx_idx > ? OR (tx_idx = ? AND ev_idx > ?))))", "height >= ?"]
        args: list[Any] = [pos[0], pos[0], pos[1], pos[1], pos[2], from_height]
        if source:
            where.append("source = ?")
            args.append(source)
        if name:
            where.append("name = ?")
            args.append(name)
        sql = (f"SELECT height, tx_idx, ev_idx, tx_hash, source, name, data FROM events WHERE {' AND '.join(where)} "
               "ORDER BY height, tx_idx, ev_idx LIMIT ?")
        rows = [EventRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]))
                for r in self._rows(sql, (*args, limit + 1))]
        last = rows[limit - 1] if len(rows) > limit else None
        return rows[:limit], None if last is None else encode_cursor(last.height, last.tx_idx, last.ev_idx)

    def get_contracts(self, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Contracts, newest deployment first, with their latest version (source omitted: see versions)."""
        limit = _page(limit)
        pos = decode_cursor(cursor)
        h, i = (pos[0], pos[1]) if pos else (TOP_HEIGHT, TOP_IDX)
        sql = ("SELECT f.address, f.name, f.deployer, f.height, f.idx, f.tx_hash, "
               "(SELECT MAX(version) FROM contract_versions v WHERE v.address = f.address) AS latest "
               "FROM contract_versions f WHERE f.version = 1 AND (f.height < ? OR (f.height = ? AND f.idx < ?)) "
               "ORDER BY f.height DESC, f.idx DESC LIMIT ?")
        rows = self._rows(sql, (h, h, i, limit + 1))
        items = [{"address": r[0], "name": r[1], "deployer": r[2], "deployed_height": r[3], "tx_hash": r[5],
                  "version": r[6]} for r in rows[:limit]]
        nxt = encode_cursor(rows[limit - 1][3], rows[limit - 1][4]) if len(rows) > limit else None
        return items, nxt

    def get_contract_versions(self, address: str) -> list[ContractVersion]:
        """Every version of a contract, oldest first."""
        return [ContractVersion(*r) for r in self._rows(
            "SELECT * FROM contract_versions WHERE address=? ORDER BY version LIMIT ?", (address, MAX_PAGE))]

    def get_blocks_by_proposer(self, proposer: str, cursor: str | None, limit: int
                               ) -> tuple[list[dict[str, Any]], str | None]:
        """Blocks proposed by an address, newest first."""
        limit = _page(limit)
        pos = decode_cursor(cursor)
        h = pos[0] if pos else TOP_HEIGHT
        rows = self._rows("SELECT * FROM blocks WHERE proposer=? AND height < ? ORDER BY height DESC LIMIT ?",
                          (proposer, h, limit + 1))
        items = [_block_row(r) for r in rows[:limit]]
        return items, encode_cursor(rows[limit - 1][0], 0) if len(rows) > limit else None

    def get_tx_count(self) -> int:
        """Transactions indexed."""
        row = self._one("SELECT COUNT(*) FROM txs")
        return int(row[0]) if row else 0

    def search(self, q: str, tip: int) -> list[dict[str, Any]]:
        """What ``q`` names: a height, a transaction or block hash, an address (account or contract) or a contract
        name (prefix match, ASCII case-insensitive), at most MAX_SEARCH_RESULTS hits."""
        q = q.strip()
        out: list[dict[str, Any]] = []
        t = q.lower().removeprefix("0x")
        if q.isdigit() and len(q) <= 19:
            h = int(q)
            if 1 <= h <= tip:
                out.append({"kind": "block", "id": str(h), "label": f"block {h}"})
        if len(t) == 64 and _is_hex(t):
            row = self._one("SELECT height, idx FROM txs WHERE hash=?", (t,))
            if row:
                out.append({"kind": "tx", "id": t, "label": f"transaction at {row[0]}:{row[1]}"})
            row = self._one("SELECT height FROM blocks WHERE block_id=?", (t,))
            if row:
                out.append({"kind": "block", "id": str(row[0]), "label": f"block {row[0]}"})
        if len(t) == 40 and _is_hex(t):
            row = self._one("SELECT name FROM contract_versions WHERE address=? AND version=1", (t,))
            if row:
                out.append({"kind": "contract", "id": t, "label": f"contract {row[0]}"})
            count = self._one("SELECT COUNT(*) FROM txs WHERE sender=?", (t,))
            n = int(count[0]) if count else 0
            if n or not row:
                out.append({"kind": "account", "id": t, "label": f"account ({n} transactions sent)"})
        if q and len(q) <= 64:
            esc = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            for r in self._rows(f"SELECT address, name FROM contract_versions WHERE version=1 AND "
                                f"(name {self.dialect.like} ? ESCAPE '\\' OR address = ?) ORDER BY name, address "
                                f"LIMIT ?", (esc + "%", q, MAX_SEARCH_RESULTS)):
                if not any(o["kind"] == "contract" and o["id"] == r[0] for o in out):
                    out.append({"kind": "contract", "id": r[0], "label": f"contract {r[1]}"})
        return out[:MAX_SEARCH_RESULTS]

    def iter_dump(self) -> Iterator[tuple[Any, ...]]:
        """Every row of every table in a fixed order (tests compare dumps to prove idempotence, and that both
        backends hold the same index)."""
        for table, order in DUMP_ORDER:
            for r in self._rows(f"SELECT * FROM {table} ORDER BY {order}"):
                yield (table, *r)


def _block_row(r: Sequence[Any]) -> dict[str, Any]:
    return {"height": r[0], "block_id": r[1], "time_ms": r[2], "proposer": r[3], "tx_count": r[4], "round": r[5],
            "signatures": r[6]}


def _page(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


def _is_hex(t: str) -> bool:
    return all(c in "0123456789abcdef" for c in t)
