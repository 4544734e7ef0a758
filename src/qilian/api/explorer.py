"""Explorer routes: paginated index queries, search, block lists, validators — and the explorer's static pages.

Index-backed routes (``/contracts``, ``/accounts/{addr}/txs``, ``/events``, ``/search``) answer from the index
(SQLite or PostgreSQL), which may trail the chain by a moment; each answer says up to which height it is indexed
(``indexed_height``). Anything a client must trust is not here: it verifies blocks, transactions and state through
the proof-carrying routes (``/blocks/{h}``, ``/txs/{hash}``, ``/state/...``).

Index queries never run on the event loop: the loop also drives consensus, gossip and every other route, and an
index query can take long (a large index, a PostgreSQL server under load or holding a lock). They run on
:class:`IndexReads`, a small bounded thread pool; SQLite and psycopg release the GIL while they wait.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn, TypeVar

from fastapi import APIRouter, Query

from qilian.api.errors import ApiError
from qilian.api.readside import MAX_BLOCKS_PAGE, ReadSide
from qilian.execution.members import get_org, get_org_names
from qilian.indexer.service import open_index
from qilian.indexer.sql import DEFAULT_PAGE, MAX_PAGE, IndexQueryError, SqlIndex

if TYPE_CHECKING:
    from qilian.node.node import Node

MAX_QUERY_TEXT: Final = 128
"""Longest search text or filter value accepted."""
INDEX_READ_THREADS: Final = 4
"""Threads running index queries; each keeps one read connection (SQLite file handle or PostgreSQL session)."""
MAX_INDEX_READS: Final = 256
"""Index queries admitted at once (running or queued for a thread); beyond it a route answers 503 ``busy``, so a
stuck index database cannot pile up unbounded work behind the pool."""

T = TypeVar("T")


class IndexReads:
    """Runs index queries on a bounded thread pool, off the event loop."""

    def __init__(self, threads: int = INDEX_READ_THREADS, limit: int = MAX_INDEX_READS):
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="index-read")
        self._lock = threading.Lock()
        self.limit = limit
        self.in_flight = 0
        """Queries submitted and not finished (running or queued); counted until the thread is done, even when the
        client that asked went away."""

    def _on_done(self, _: object) -> None:
        with self._lock:
            self.in_flight -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a pool thread; raises ApiError 503 when ``limit`` queries are already admitted."""
        with self._lock:
            if self.in_flight >= self.limit:
                raise ApiError(503, "busy", f"{self.limit} index queries are already running or waiting; retry")
            self.in_flight += 1
        try:
            fut = self._pool.submit(fn)
        except RuntimeError:  # the pool is shut down (the node is stopping)
            self._on_done(None)
            raise ApiError(503, "unavailable", "the node is stopping") from None
        fut.add_done_callback(self._on_done)
        return await asyncio.wrap_future(fut)

    def close(self) -> None:
        """Finish the running queries, drop the queued ones, stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def get_static_dir() -> Path:
    """The packaged static assets (explorer pages, Swagger UI), shipped in the wheel as package data."""
    return Path(str(resources.files("qilian.api") / "static"))


def _is_address(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)


def open_node_index(node: Node) -> SqlIndex | IndexOff:
    """The index backend the node is configured with (``[indexer]`` in node.toml: SQLite beside the node by default,
    or PostgreSQL — both answer every route below identically — or ``off``)."""
    if node.config.indexer_backend == "off":
        return IndexOff()
    return open_index(node.config.home, node.config.indexer_backend, node.config.indexer_url)


class IndexOff:
    """The index of a node configured without one (``[indexer] backend = "off"``): every query the explorer's
    index routes make is answered 503 ``index_off``; the routes over the read side (blocks, transactions, state,
    proofs) do not need the index and keep working."""

    def _refuse(self) -> NoReturn:
        raise ApiError(503, "index_off", "this node keeps no explorer index ([indexer] backend = \"off\" in its "
                                         "node.toml); ask a node that does")

    def get_last_height(self) -> int:
        self._refuse()

    def get_tx_count(self) -> int:
        self._refuse()

    def get_contracts(self, *_: Any) -> Any:
        self._refuse()

    def get_contract_versions(self, *_: Any) -> Any:
        self._refuse()

    def get_txs_of(self, *_: Any) -> Any:
        self._refuse()

    def get_events(self, *_: Any) -> Any:
        self._refuse()

    def get_blocks_by_proposer(self, *_: Any) -> Any:
        self._refuse()

    def search(self, *_: Any) -> Any:
        self._refuse()

    def close(self) -> None:
        return None


def make_router(node: Node, reads: ReadSide, index: SqlIndex | IndexOff,
                index_reads: IndexReads | None = None) -> APIRouter:
    """The explorer's JSON routes over the read side and the index (queried through ``index_reads``; a pool of its
    own when not given)."""
    router = APIRouter()
    pool = index_reads or IndexReads()

    def indexed() -> int:
        return index.get_last_height()

    def cursor_guard(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except IndexQueryError as exc:
            raise ApiError(400, "bad_cursor", str(exc)) from None

    @router.get("/blocks", summary="Newest-first block summaries (explorer list)")
    async def list_blocks(before: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
                          limit: Annotated[int, Query(ge=1, le=MAX_BLOCKS_PAGE)] = DEFAULT_PAGE) -> dict[str, Any]:
        return reads.get_block_summaries(before, limit)

    @router.get("/validators", summary="The validator set in force, with organisation and recent signatures")
    async def validators() -> dict[str, Any]:
        """The set that signs the next block and the organisations, read from the chain state of the tip (not
        genesis: governance changes both), with each validator's recent commit signatures."""
        act = reads.get_signing_activity()
        suite = node.suite
        tip = node.get_tip()
        current, _ = node.valsets.get_sets_at_root(tip.state_root)
        state_get = node.store.get_state

        def org_of(public_key: bytes) -> str | None:
            member = node.get_member(public_key)
            return member.organisation if member is not None else None

        organisations = []
        for name in get_org_names(node.rules, state_get):
            rec = get_org(state_get, name)
            if rec is None:
                continue
            members = []
            for key in rec[2]:
                member = node.get_member(key)
                if member is not None:
                    members.append({"name": member.name, "roles": sorted(member.roles),
                                    "address": suite.compute_address(key).hex()})
            organisations.append({"name": name, "members": members})
        return {
            "tip": act["tip"], "window": act["window"], "total_power": current.total_power,
            "validators": [{"address": v.address.hex(), "public_key": v.public_key.hex(), "power": v.power,
                            "organisation": org_of(v.public_key),
                            "last_signed": act["last_signed"].get(v.address.hex()),
                            "signed_in_window": act["signed"].get(v.address.hex(), 0)}
                           for v in current.validators],
            "organisations": organisations,
        }

    @router.get("/contracts", summary="Deployed contracts, newest first (from the index)")
    async def list_contracts(cursor: Annotated[str | None, Query(max_length=64)] = None,
                             limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            items, nxt = cursor_guard(index.get_contracts, cursor, limit)
            return {"items": items, "next_cursor": nxt, "indexed_height": indexed()}
        return await pool.run(read)

    @router.get("/contracts/{address}/versions", summary="Every version of a contract with its source")
    async def contract_versions(address: str) -> dict[str, Any]:
        if len(address) > MAX_QUERY_TEXT:
            raise ApiError(400, "bad_address", "address too long")
        vs, at = await pool.run(lambda: (index.get_contract_versions(address), indexed()))
        if not vs:
            raise ApiError(404, "not_found", f"no contract at {address} in the index")
        return {"address": address, "indexed_height": at,
                "versions": [{"version": v.version, "name": v.name, "deployer": v.deployer, "height": v.height,
                              "tx_hash": v.tx_hash or None, "source": v.source} for v in vs]}

    @router.get("/accounts/{address}/txs", summary="Transactions sent by an address or targeting it, newest first")
    async def account_txs(address: str, cursor: Annotated[str | None, Query(max_length=64)] = None,
                          limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE) -> dict[str, Any]:
        a = address.lower().removeprefix("0x")
        if not _is_address(a) and not (0 < len(a) <= MAX_QUERY_TEXT and a.isidentifier()):
            raise ApiError(400, "bad_address", "an account is 40 hex digits (or a module/system contract name)")
        rows, nxt, at = await pool.run(lambda: (*cursor_guard(index.get_txs_of, a, cursor, limit), indexed()))
        return {"address": a, "items": [_row(r) for r in rows], "next_cursor": nxt, "indexed_height": at}

    @router.get("/events", summary="Committed events, oldest first, by source and/or name (from the index)")
    async def list_events(source: Annotated[str | None, Query(max_length=MAX_QUERY_TEXT)] = None,
                          name: Annotated[str | None, Query(max_length=MAX_QUERY_TEXT)] = None,
                          from_height: Annotated[int, Query(ge=0, lt=2**62)] = 0,
                          cursor: Annotated[str | None, Query(max_length=64)] = None,
                          limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE) -> dict[str, Any]:
        rows, nxt, at = await pool.run(
            lambda: (*cursor_guard(index.get_events, source, name, from_height, cursor, limit), indexed()))
        return {"items": [_row(r) for r in rows], "next_cursor": nxt, "indexed_height": at}

    @router.get("/proposers/{address}/blocks", summary="Blocks proposed by a validator, newest first")
    async def proposer_blocks(address: str, cursor: Annotated[str | None, Query(max_length=64)] = None,
                              limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE) -> dict[str, Any]:
        a = address.lower().removeprefix("0x")
        if not _is_address(a):
            raise ApiError(400, "bad_address", "a proposer is 40 hex digits")
        items, nxt, at = await pool.run(
            lambda: (*cursor_guard(index.get_blocks_by_proposer, a, cursor, limit), indexed()))
        return {"address": a, "items": items, "next_cursor": nxt, "indexed_height": at}

    @router.get("/search", summary="Find a block (height or ID), transaction, account or contract (address/name)")
    async def search(q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_TEXT)]) -> dict[str, Any]:
        tip = node.get_tip().height
        results, at = await pool.run(lambda: (index.search(q, tip), indexed()))
        t = q.strip().lower().removeprefix("0x")
        if len(t) == 64 and not any(r["kind"] == "tx" for r in results):
            # Not indexed yet (or the index is behind): the block store knows every committed transaction.
            try:
                loc = node.store.get_tx_location(bytes.fromhex(t))
            except ValueError:
                loc = None
            if loc is not None:
                results.insert(0, {"kind": "tx", "id": t, "label": f"transaction at {loc[0]}:{loc[1]}"})
        return {"query": q, "results": results, "indexed_height": at}

    @router.get("/indexer", summary="How far the index is")
    async def indexer_status() -> dict[str, Any]:
        tip = node.get_tip().height
        at, txs = await pool.run(lambda: (indexed(), index.get_tx_count()))
        return {"indexed_height": at, "tip": tip, "txs": txs}

    return router


def _row(r: Any) -> dict[str, Any]:
    return {k: getattr(r, k) for k in r.__slots__}
