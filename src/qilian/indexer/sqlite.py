"""The index database: SQLite beside the node's data, derived from committed blocks only.

Why SQLite: the chain's LMDB store answers by key (height, tx hash, state key); an explorer needs the other
directions — a sender's transactions, a contract's events, a proposer's blocks, contracts by name — with keyset
pagination. These are secondary indexes that can always be rebuilt from the block store, so they live in their own
file: losing or deleting it costs a re-index, never chain data.

Every height is written in ONE SQLite transaction together with the new ``last_height``: after a kill the index
holds whole heights only and resumes after the last one. Writing a height first deletes whatever that height
wrote before, so re-indexing a height leaves the database byte-for-byte equal in content (idempotent).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

MAX_PAGE: Final = 100
"""Most rows in one page of any index query."""
DEFAULT_PAGE: Final = 20
"""Rows in a page when the client does not say."""
MAX_SEARCH_RESULTS: Final = 20
"""Most hits one search answers."""
BUSY_TIMEOUT_S: Final = 5.0
"""How long a reader waits for the writer's lock before failing."""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
  height INTEGER PRIMARY KEY, block_id TEXT NOT NULL, time_ms INTEGER NOT NULL, proposer TEXT NOT NULL,
  tx_count INTEGER NOT NULL, round INTEGER NOT NULL, signers INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_by_proposer ON blocks (proposer, height);
CREATE INDEX IF NOT EXISTS blocks_by_id ON blocks (block_id);
CREATE TABLE IF NOT EXISTS txs (
  hash TEXT PRIMARY KEY, height INTEGER NOT NULL, idx INTEGER NOT NULL, sender TEXT NOT NULL,
  target TEXT NOT NULL, method TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL,
  fuel_used INTEGER NOT NULL, time_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS txs_by_height ON txs (height, idx);
CREATE INDEX IF NOT EXISTS txs_by_sender ON txs (sender, height, idx);
CREATE INDEX IF NOT EXISTS txs_by_target ON txs (target, height, idx);
CREATE TABLE IF NOT EXISTS events (
  height INTEGER NOT NULL, tx_idx INTEGER NOT NULL, ev_idx INTEGER NOT NULL, tx_hash TEXT NOT NULL,
  source TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (height, tx_idx, ev_idx));
CREATE INDEX IF NOT EXISTS events_by_source ON events (source, name, height, tx_idx, ev_idx);
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, height, tx_idx, ev_idx);
CREATE TABLE IF NOT EXISTS contract_versions (
  address TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, deployer TEXT NOT NULL,
  height INTEGER NOT NULL, idx INTEGER NOT NULL, tx_hash TEXT NOT NULL, source TEXT NOT NULL,
  PRIMARY KEY (address, version));
CREATE INDEX IF NOT EXISTS contract_versions_by_height ON contract_versions (height, idx);
CREATE INDEX IF NOT EXISTS contract_versions_by_name ON contract_versions (name);
"""


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


class SqliteIndex:
    """The index file. One writer thread (the indexer) and any number of readers (API handlers); WAL mode lets
    readers see the last committed height while the writer works."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write_lock = threading.Lock()
        self._w = self._connect()
        with self._w:
            self._w.executescript(SCHEMA)
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

    def close(self) -> None:
        """Close the writer connection (readers close with their threads)."""
        self._w.close()
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()

    # -- writes ------------------------------------------------------------------------------------------

    def get_last_height(self) -> int:
        """The highest height indexed together with every height below it (0: none)."""
        row = self._r.execute("SELECT value FROM meta WHERE key='last_height'").fetchone()
        return int(row[0]) if row else 0

    def process_height(self, rows: HeightRows, advance: bool) -> None:
        """Write one height in one transaction: delete what it wrote before, insert its rows, and (when
        ``advance``) record it as the last indexed height — so a kill leaves whole heights only."""
        h = rows.height
        with self._write_lock:
            c = self._w
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("DELETE FROM blocks WHERE height=?", (h,))
                c.execute("DELETE FROM txs WHERE height=?", (h,))
                c.execute("DELETE FROM events WHERE height=?", (h,))
                c.execute("DELETE FROM contract_versions WHERE height=?", (h,))
                if h > 0:
                    c.execute("INSERT INTO blocks VALUES (?,?,?,?,?,?,?)", (h, *rows.block))
                c.executemany("INSERT OR REPLACE INTO txs VALUES (?,?,?,?,?,?,?,?,?,?)",
                              [(t.hash, t.height, t.idx, t.sender, t.target, t.method, t.status, t.error,
                                t.fuel_used, t.time_ms) for t in rows.txs])
                c.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)",
                              [(e.height, e.tx_idx, e.ev_idx, e.tx_hash, e.source, e.name,
                                json.dumps(e.data, sort_keys=True, separators=(",", ":"))) for e in rows.events])
                for cv in rows.contracts:
                    version = cv.version
                    if version == 0:
                        prev = c.execute(
                            "SELECT COALESCE(MAX(version), 0) FROM contract_versions WHERE address=? AND "
                            "(height < ? OR (height = ? AND idx < ?))", (cv.address, cv.height, cv.height, cv.idx)
                        ).fetchone()[0]
                        version = int(prev) + 1
                    name = cv.name
                    if not name:
                        first = c.execute("SELECT name FROM contract_versions WHERE address=? AND version=1",
                                          (cv.address,)).fetchone()
                        name = first[0] if first else ""
                    c.execute("INSERT OR REPLACE INTO contract_versions VALUES (?,?,?,?,?,?,?,?)",
                              (cv.address, version, name, cv.deployer, cv.height, cv.idx, cv.tx_hash, cv.source))
                if advance:
                    c.execute("INSERT OR REPLACE INTO meta VALUES ('last_height', ?)", (str(h),))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def get_missing_heights(self, upto: int, limit: int) -> list[int]:
        """Heights in 1..upto with no block row (a gap: a row lost or deleted), at most ``limit``."""
        (count,) = self._r.execute("SELECT COUNT(*) FROM blocks WHERE height BETWEEN 1 AND ?", (upto,)).fetchone()
        if count >= upto:
            return []
        missing: list[int] = []
        expect = 1
        for (h,) in self._r.execute("SELECT height FROM blocks WHERE height BETWEEN 1 AND ? ORDER BY height",
                                    (upto,)):
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
        h, i = (pos[0], pos[1]) if pos else (2**62, 2**31)
        sql = ("SELECT * FROM txs WHERE sender=? AND (height < ? OR (height = ? AND idx < ?)) "
               "UNION SELECT * FROM txs WHERE target=? AND (height < ? OR (height = ? AND idx < ?)) "
               "ORDER BY height DESC, idx DESC LIMIT ?")
        rows = [TxRow(*r) for r in self._r.execute(sql, (address, h, h, i, address, h, h, i, limit + 1))]
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
                for r in self._r.execute(sql, (*args, limit + 1))]
        last = rows[limit - 1] if len(rows) > limit else None
        return rows[:limit], None if last is None else encode_cursor(last.height, last.tx_idx, last.ev_idx)

    def get_contracts(self, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Contracts, newest deployment first, with their latest version (source omitted: see versions)."""
        limit = _page(limit)
        pos = decode_cursor(cursor)
        h, i = (pos[0], pos[1]) if pos else (2**62, 2**31)
        sql = ("SELECT f.address, f.name, f.deployer, f.height, f.idx, f.tx_hash, "
               "(SELECT MAX(version) FROM contract_versions v WHERE v.address = f.address) AS latest "
               "FROM contract_versions f WHERE f.version = 1 AND (f.height < ? OR (f.height = ? AND f.idx < ?)) "
               "ORDER BY f.height DESC, f.idx DESC LIMIT ?")
        rows = self._r.execute(sql, (h, h, i, limit + 1)).fetchall()
        items = [{"address": r[0], "name": r[1], "deployer": r[2], "deployed_height": r[3], "tx_hash": r[5],
                  "version": r[6]} for r in rows[:limit]]
        nxt = encode_cursor(rows[limit - 1][3], rows[limit - 1][4]) if len(rows) > limit else None
        return items, nxt

    def get_contract_versions(self, address: str) -> list[ContractVersion]:
        """Every version of a contract, oldest first."""
        return [ContractVersion(*r) for r in self._r.execute(
            "SELECT * FROM contract_versions WHERE address=? ORDER BY version LIMIT ?", (address, MAX_PAGE))]

    def get_blocks_by_proposer(self, proposer: str, cursor: str | None, limit: int
                               ) -> tuple[list[dict[str, Any]], str | None]:
        """Blocks proposed by an address, newest first."""
        limit = _page(limit)
        pos = decode_cursor(cursor)
        h = pos[0] if pos else 2**62
        rows = self._r.execute("SELECT * FROM blocks WHERE proposer=? AND height < ? ORDER BY height DESC LIMIT ?",
                               (proposer, h, limit + 1)).fetchall()
        items = [_block_row(r) for r in rows[:limit]]
        return items, encode_cursor(rows[limit - 1][0], 0) if len(rows) > limit else None

    def get_tx_count(self) -> int:
        """Transactions indexed."""
        return int(self._r.execute("SELECT COUNT(*) FROM txs").fetchone()[0])

    def search(self, q: str, tip: int) -> list[dict[str, Any]]:
        """What ``q`` names: a height, a transaction or block hash, an address (account or contract) or a contract
        name (prefix match), at most MAX_SEARCH_RESULTS hits."""
        q = q.strip()
        out: list[dict[str, Any]] = []
        t = q.lower().removeprefix("0x")
        if q.isdigit() and len(q) <= 19:
            h = int(q)
            if 1 <= h <= tip:
                out.append({"kind": "block", "id": str(h), "label": f"block {h}"})
        if len(t) == 64 and _is_hex(t):
            row = self._r.execute("SELECT height, idx FROM txs WHERE hash=?", (t,)).fetchone()
            if row:
                out.append({"kind": "tx", "id": t, "label": f"transaction at {row[0]}:{row[1]}"})
            row = self._r.execute("SELECT height FROM blocks WHERE block_id=?", (t,)).fetchone()
            if row:
                out.append({"kind": "block", "id": str(row[0]), "label": f"block {row[0]}"})
        if len(t) == 40 and _is_hex(t):
            row = self._r.execute("SELECT name FROM contract_versions WHERE address=? AND version=1",
                                  (t,)).fetchone()
            if row:
                out.append({"kind": "contract", "id": t, "label": f"contract {row[0]}"})
            n = self._r.execute("SELECT COUNT(*) FROM txs WHERE sender=?", (t,)).fetchone()[0]
            if n or not row:
                out.append({"kind": "account", "id": t, "label": f"account ({n} transactions sent)"})
        if q and len(q) <= 64:
            esc = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            for r in self._r.execute("SELECT address, name FROM contract_versions WHERE version=1 AND "
                                     "(name LIKE ? ESCAPE '\\' OR address = ?) ORDER BY name LIMIT ?",
                                     (esc + "%", q, MAX_SEARCH_RESULTS)):
                if not any(o["kind"] == "contract" and o["id"] == r[0] for o in out):
                    out.append({"kind": "contract", "id": r[0], "label": f"contract {r[1]}"})
        return out[:MAX_SEARCH_RESULTS]

    def iter_dump(self) -> Iterator[tuple[Any, ...]]:
        """Every row of every table in a fixed order (tests compare dumps to prove idempotence)."""
        for table, order in (("meta", "key"), ("blocks", "height"), ("txs", "hash"),
                             ("events", "height, tx_idx, ev_idx"), ("contract_versions", "address, version")):
            for r in self._r.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                yield (table, *r)


def _block_row(r: Sequence[Any]) -> dict[str, Any]:
    return {"height": r[0], "block_id": r[1], "time_ms": r[2], "proposer": r[3], "tx_count": r[4], "round": r[5],
            "signatures": r[6]}


def _page(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


def _is_hex(t: str) -> bool:
    return all(c in "0123456789abcdef" for c in t)
