"""``qilian bench explorer``: explorer API latency over a large index.

Why: the explorer's routes must stay fast when the index holds millions of rows, in both backends. The bench
builds an index of ``txs`` synthetic but realistic transactions — skewed senders (a few hot accounts, a long tail),
contract calls that emit events, key-value writes, deployments — written height by height through the indexer's own
write path (``SqlIndex.process_height``, one transaction per height, exactly as the indexer writes committed
blocks), and reports the build rate. An existing index that already holds the requested count is attached, not
rebuilt. Then it serves the explorer router with uvicorn on loopback and drives it with ``concurrency`` client
threads in a closed loop (a bounded load: at most ``concurrency`` requests in flight), reporting p50/p95/p99 per
route.

``/blocks?before=`` reads the node's block store, not the index; the bench's node is a fresh home with only
genesis, so that route measures the store path without block decoding (see docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from qilian.indexer.service import MAX_HEIGHTS_PER_WRITE, MAX_TXS_PER_WRITE
from qilian.indexer.sql import ContractVersion, EventRow, HeightRows, SqlIndex, TxRow

MAX_TXS: Final = 10_000_000
"""Largest index the bench builds."""
MAX_CONCURRENCY: Final = 64
"""Most client threads."""
REQUEST_TIMEOUT_S: Final = 30.0
"""A request slower than this counts as an error."""
VALIDATORS: Final = 4
"""Proposers rotating over the synthetic blocks."""
BLOCK_INTERVAL_MS: Final = 1000
"""Time between synthetic blocks."""
GENESIS_TIME_MS: Final = 1_767_225_600_000
"""Time of the first synthetic block (2026-01-01)."""
CONTRACT_NAMES: Final = ("token", "registry", "trace", "escrow", "oracle", "vote", "copyright", "iot")


@dataclass(frozen=True, slots=True)
class ExplorerBenchConfig:
    """What to build and how hard to query it."""

    txs: int = 200_000
    """Transactions in the index."""
    txs_per_block: int = 500
    """Transactions per synthetic block."""
    accounts: int = 5_000
    """Distinct senders."""
    contracts: int = 200
    """Contracts deployed (at height 1)."""
    requests: int = 2_000
    """Requests per route."""
    concurrency: int = 4
    """Client threads (requests in flight)."""
    seed: int = 20261123
    """Seed of the synthetic chain and the query mix."""
    batch: bool = True
    """Build in the indexer's catch-up batches (several heights per write); False: one write per height."""


@dataclass(frozen=True, slots=True)
class BuildReport:
    """How the index was built."""

    txs: int
    """Transactions in the index."""
    heights: int
    """Heights written."""
    seconds: float
    """Wall time of the build (0 when attached)."""
    attached: bool
    """An existing index was used."""

    @property
    def rate(self) -> float:
        """Transactions indexed per second."""
        return self.txs / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class RouteLatency:
    """Latency of one route under the bench's load."""

    route: str
    """Route template with the query it varies."""
    requests: int
    """Requests answered 200."""
    errors: int
    """Requests answered otherwise (or timed out)."""
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float
    """Requests per second of this route (with ``concurrency`` in flight)."""


def get_account(i: int) -> str:
    """The synthetic address of account ``i``."""
    return hashlib.sha256(b"account-%d" % i).hexdigest()[:40]


def get_contract(i: int) -> str:
    """The synthetic address of contract ``i``."""
    return hashlib.sha256(b"contract-%d" % i).hexdigest()[:40]


def get_tx_hash(height: int, idx: int) -> str:
    """The synthetic hash of a transaction."""
    return hashlib.sha256(b"tx-%d-%d" % (height, idx)).hexdigest()


def _pick_account(rng: random.Random, n: int) -> int:
    """Skewed: the cube of a uniform draw puts ~half the traffic on the first 12% of accounts."""
    return min(n - 1, int(n * rng.random() ** 3))


def compute_synthetic_rows(cfg: ExplorerBenchConfig, height: int) -> HeightRows:
    """The rows of synthetic block ``height`` (deterministic in the seed): height 1 deploys the contracts, every
    block holds ``txs_per_block`` transactions — 70% contract calls emitting a Transfer event, 25% key-value puts
    emitting put, 5% failed calls without events."""
    rng = random.Random(cfg.seed * 1_000_003 + height)
    time_ms = GENESIS_TIME_MS + height * BLOCK_INTERVAL_MS
    txs: list[TxRow] = []
    events: list[EventRow] = []
    contracts: list[ContractVersion] = []
    n = cfg.txs_per_block
    for i in range(n):
        th = get_tx_hash(height, i)
        sender = get_account(_pick_account(rng, cfg.accounts))
        if height == 1 and i < cfg.contracts:
            addr = get_contract(i)
            name = f"{CONTRACT_NAMES[i % len(CONTRACT_NAMES)]}_{i}"
            contracts.append(ContractVersion(addr, 1, name, sender, height, i, th, f"# {name}\n"))
            txs.append(TxRow(th, height, i, sender, addr, "deploy", "ok", "", 2_000 + i, time_ms))
            continue
        r = rng.random()
        if r < 0.70:
            c = get_contract(_pick_account(rng, cfg.contracts))
            to = get_account(_pick_account(rng, cfg.accounts))
            txs.append(TxRow(th, height, i, sender, c, "transfer", "ok", "", 120 + i % 50, time_ms))
            events.append(EventRow(height, i, 0, th, c, "Transfer",
                                   {"from": sender, "to": to, "amount": rng.randint(1, 10**6)}))
        elif r < 0.95:
            txs.append(TxRow(th, height, i, sender, "kv", "put", "ok", "", 60, time_ms))
            events.append(EventRow(height, i, 0, th, "kv", "put", {"key": f"k{rng.randint(0, 10**9)}"}))
        else:
            c = get_contract(_pick_account(rng, cfg.contracts))
            txs.append(TxRow(th, height, i, sender, c, "transfer", "failed", "insufficient balance", 90, time_ms))
    block_id = hashlib.sha256(b"block-%d" % height).hexdigest()
    proposer = get_account(10**9 + height % VALIDATORS)
    return HeightRows(height, (block_id, time_ms, proposer, n, 0, VALIDATORS - 1), tuple(txs), tuple(events),
                      tuple(contracts))


def process_build(index: SqlIndex, cfg: ExplorerBenchConfig, progress: Callable[[str], None]) -> BuildReport:
    """Write synthetic heights after the index's last one until it holds ``cfg.txs`` transactions — batched as the
    indexer batches a catch-up (``cfg.batch``; False: one transaction per height, as when it follows the tip)."""
    if not 0 < cfg.txs <= MAX_TXS:
        raise ValueError(f"txs must be in 1..{MAX_TXS}")
    heights = -(-cfg.txs // cfg.txs_per_block)
    last = index.get_last_height()
    if last >= heights:
        return BuildReport(index.get_tx_count(), last, 0.0, True)
    per_write = max(1, min(MAX_HEIGHTS_PER_WRITE, MAX_TXS_PER_WRITE // cfg.txs_per_block)) if cfg.batch else 1
    t0 = time.perf_counter()
    reported = last
    for first in range(last + 1, heights + 1, per_write):
        hs = range(first, min(heights, first + per_write - 1) + 1)
        index.process_heights([compute_synthetic_rows(cfg, h) for h in hs], advance=True)
        if hs[-1] - reported >= 50:
            reported = hs[-1]
            done = (hs[-1] - last) * cfg.txs_per_block
            progress(f"indexed {hs[-1] * cfg.txs_per_block:,} txs ({done / (time.perf_counter() - t0):,.0f} tx/s)")
    return BuildReport(index.get_tx_count(), heights, time.perf_counter() - t0, last > 0)


def compute_queries(cfg: ExplorerBenchConfig, heights: int) -> dict[str, list[str]]:
    """Per route, the request paths of the bench (deterministic in the seed): hot and cold accounts, contracts'
    events, searches for an address, a tx hash, a name prefix and a height, pages of blocks."""
    rng = random.Random(cfg.seed)
    n = cfg.requests
    search: list[str] = []
    for k in range(n):
        kind = k % 4
        if kind == 0:
            search.append(f"/search?q={get_account(_pick_account(rng, cfg.accounts))}")
        elif kind == 1:
            search.append(f"/search?q={get_tx_hash(rng.randint(1, heights), rng.randrange(cfg.txs_per_block))}")
        elif kind == 2:
            search.append(f"/search?q={rng.choice(CONTRACT_NAMES)[:rng.randint(1, 5)]}")
        else:
            search.append(f"/search?q={rng.randint(1, heights)}")
    return {
        "/accounts/{addr}/txs": [f"/accounts/{get_account(_pick_account(rng, cfg.accounts))}/txs?limit=20"
                                 for _ in range(n)],
        "/events?source=": [f"/events?source={get_contract(_pick_account(rng, cfg.contracts))}&limit=20"
                            for _ in range(n)],
        "/search?q=": search,
        "/contracts": [f"/contracts?limit=20&cursor=1.{rng.randint(1, cfg.contracts)}.0" if k % 2 else
                       "/contracts?limit=20" for k in range(n)],
        "/blocks?before=": [f"/blocks?before={rng.randint(2, heights + 1)}&limit=20" for _ in range(n)],
    }


def _percentile(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100 * (len(sorted_ms) - 1)))]


def process_route_load(base_url: str, route: str, paths: list[str], concurrency: int) -> RouteLatency:
    """Send ``paths`` with ``concurrency`` closed-loop client threads; latency of each answer."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    nxt = [0]

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as http:
            while True:
                with lock:
                    k = nxt[0]
                    nxt[0] += 1
                if k >= len(paths):
                    return
                t = time.perf_counter()
                try:
                    ok = http.get(paths[k]).status_code == 200
                except httpx.HTTPError:
                    ok = False
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    if ok:
                        lat.append(ms)
                    else:
                        errors[0] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return RouteLatency(route, len(lat), errors[0], _percentile(lat, 50), _percentile(lat, 95),
                        _percentile(lat, 99), len(paths) / wall if wall else 0.0)


def run_explorer_bench(index: SqlIndex, cfg: ExplorerBenchConfig, progress: Callable[[str], None]
                       ) -> tuple[BuildReport, list[RouteLatency]]:
    """Build (or attach to) the index, serve the explorer routes over it, measure each route."""
    import uvicorn
    from fastapi import FastAPI

    from qilian.api.explorer import make_router
    from qilian.api.readside import ReadSide
    from qilian.bench.ports import get_free_port_block
    from qilian.node.config import init_home, load_config
    from qilian.node.node import Node

    if not 1 <= cfg.concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be in 1..{MAX_CONCURRENCY}")
    build = process_build(index, cfg, progress)
    heights = index.get_last_height()
    with tempfile.TemporaryDirectory(prefix="qilian-bench-explorer-") as tmp:
        home = Path(tmp) / "home"
        init_home(home, chain_id="bench-explorer", suite_name="ed25519")
        node = Node(load_config(home))
        app = FastAPI()
        app.include_router(make_router(node, ReadSide(node.store, node.suite, node.genesis), index))
        port = get_free_port_block(1)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not server.started:
                if time.monotonic() > deadline:
                    raise RuntimeError("the bench's API server did not start")
                time.sleep(0.05)
            base = f"http://127.0.0.1:{port}"
            out = []
            for route, paths in compute_queries(cfg, heights).items():
                progress(f"measuring {route}")
                process_route_load(base, route, paths[: max(1, cfg.requests // 10)], cfg.concurrency)  # warm-up
                out.append(process_route_load(base, route, paths, cfg.concurrency))
        finally:
            server.should_exit = True
            thread.join(10)
            node.store.close()
    return build, out
