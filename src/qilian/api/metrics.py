"""Prometheus metrics of one node (``GET /metrics``), and the health and readiness checks.

Each app gets its own registry (tests run several nodes' apps in one process). Gauges that mirror node state
(height, mempool, peers) are read at scrape time by a collector, so they are never stale; distributions (block
time, rounds per height, execute/state/store time, API latency) are observed as they happen — per commit through
the node's commit hook, per request through a middleware.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response

from qilian.node.gcstats import get_gc_timer
from qilian.node.wal import Wal
from qilian.types.core import PREVOTE, Block, Commit, Receipt

if TYPE_CHECKING:
    from qilian.node.node import Node

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus text exposition format."""
STEP_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds buckets for per-block phases and API latency."""
BLOCK_TIME_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds buckets for the time between consecutive blocks."""
ROUND_BUCKETS: Final = (1, 2, 3, 4, 6, 10)
"""Buckets of consensus rounds needed per height (1 = decided in round 0)."""
VOTE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0)
"""Seconds buckets for the first-vote-to-quorum delay of a round's prevotes and precommits."""
MAX_ROUTE_LABELS: Final = 64
"""Most distinct route labels recorded; unknown paths share one label (no label explosion from scanners)."""


class _NodeCollector(Collector):
    """Gauges read from the node at scrape time."""

    def __init__(self, node: Node, extra: Callable[[], dict[str, float]]):
        self.node = node
        self.extra = extra

    def collect(self) -> Iterator[Any]:
        n = self.node
        tip = n.get_tip()
        yield GaugeMetricFamily("qilian_height", "Height of the last committed block", value=tip.height)
        yield GaugeMetricFamily("qilian_mempool_size", "Transactions waiting in the mempool", value=len(n.mempool))
        memory = GaugeMetricFamily("qilian_memory_bytes", "Memory held by part: the mempool's transactions (encoded "
                                   "bytes), the state-tree node cache (estimated), RocksDB's memtables, block cache "
                                   "(and its pinned part) and table readers", labels=["part"])
        memory.add_metric(["mempool"], n.mempool.total_bytes)
        for part, size in n.store.get_memory_bytes().items():
            memory.add_metric([part], size)
        yield memory
        seconds, collections = get_gc_timer().get_totals()
        gc_seconds = CounterMetricFamily("qilian_gc_seconds", "Seconds this process spent in Python's cyclic "
                                         "garbage collector, by generation (2: the whole heap)", labels=["generation"])
        gc_runs = CounterMetricFamily("qilian_gc_collections", "Collections of Python's cyclic garbage collector, by "
                                      "generation", labels=["generation"])
        for generation, (secs, runs) in enumerate(zip(seconds, collections, strict=True)):
            gc_seconds.add_metric([str(generation)], secs)
            gc_runs.add_metric([str(generation)], runs)
        yield gc_seconds
        yield gc_runs
        yield GaugeMetricFamily("qilian_signature_cache_entries", "Verified signatures remembered (bounded by "
                                "SIG_CACHE_SIZE)", value=len(n.sig_ok))
        yield CounterMetricFamily("qilian_txs_committed", "Transactions committed since the process started",
                                  value=n.txs_committed)
        yield CounterMetricFamily("qilian_blocks_committed", "Blocks committed since the process started",
                                  value=n.blocks_committed)
        yield CounterMetricFamily("qilian_store_pruned_nodes", "State-tree nodes and root pointers the pruner "
                                  "deleted since the process started (0 on an archive node)", value=n.pruned_nodes)
        yield GaugeMetricFamily("qilian_store_prune_seconds", "Time the pruner took after the last block",
                                value=n.prune_s)
        yield GaugeMetricFamily("qilian_state_oldest_height", "Oldest height whose state this node still proves "
                                "(1 on an archive node)", value=n.get_oldest_state_height())
        d = n.consensus
        if d is not None:
            yield GaugeMetricFamily("qilian_consensus_round", "Current consensus round", value=d.core.round)
            yield GaugeMetricFamily("qilian_consensus_height", "Height consensus works on", value=d.core.height)
            yield CounterMetricFamily("qilian_blocks_synced", "Blocks received by block sync",
                                      value=getattr(d, "blocks_synced", 0))
            t = d.transport
            yield GaugeMetricFamily("qilian_peers_connected", "Connected peers",
                                    value=len(t.peers) if t is not None else 0)
            yield CounterMetricFamily("qilian_p2p_violations", "Protocol violations by peers",
                                      value=t.violations if t is not None else 0)
            yield CounterMetricFamily("qilian_p2p_refused", "Peers refused or dropped: not a node registered in "
                                      "chain state", value=t.refused if t is not None else 0)
            if isinstance(d.wal, Wal):
                st = d.wal.sync_times
                buckets = [(floatToGoString(b), float(n)) for b, n in st.get_cumulative()]
                yield HistogramMetricFamily(
                    "qilian_wal_fsync_seconds", "Consensus WAL fsync latency (each own vote and proposal waits "
                    "for one)", buckets=buckets, sum_value=st.sum_s)
                yield GaugeMetricFamily("qilian_wal_fsync_max_seconds", "Slowest consensus WAL fsync since start",
                                        value=st.max_s)
        for name, value in self.extra().items():
            yield GaugeMetricFamily(name, name.replace("_", " "), value=value)


class NodeMetrics:
    """The metrics of one node's API process."""

    def __init__(self, node: Node, extra: Callable[[], dict[str, float]] | None = None):
        self.node = node
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_NodeCollector(node, extra or dict))
        r = self.registry
        self.block_interval = Histogram("qilian_block_interval_seconds", "Time between consecutive block headers",
                                        buckets=BLOCK_TIME_BUCKETS, registry=r)
        self.rounds = Histogram("qilian_rounds_per_height", "Consensus rounds needed to decide a height",
                                buckets=ROUND_BUCKETS, registry=r)
        self.phase = Histogram("qilian_block_phase_seconds", "Time per committed block by phase",
                               ["phase"], buckets=STEP_BUCKETS, registry=r)
        self.block_txs = Histogram("qilian_block_txs", "Transactions per committed block",
                                   buckets=(0, 1, 10, 100, 500, 1000, 2500, 5000), registry=r)
        self.events = Counter("qilian_events_emitted", "Contract and module events committed", registry=r)
        self.api = Histogram("qilian_api_request_seconds", "API request latency by route",
                             ["route", "method", "status"], buckets=STEP_BUCKETS, registry=r)
        self.vote_quorum = Histogram("qilian_vote_quorum_seconds",
                                     "Time from a round's first vote of a type to votes of a quorum of the power",
                                     ["type"], buckets=VOTE_BUCKETS, registry=r)
        self._last_time_ms: int | None = None
        self._routes: set[str] = set()

    def on_commit(self, block: Block, commit: Commit, hashes: list[bytes], receipts: Sequence[Receipt]) -> None:
        """The node's commit hook."""
        h = block.header
        if self._last_time_ms is not None and h.time_ms >= self._last_time_ms:
            self.block_interval.observe((h.time_ms - self._last_time_ms) / 1000)
        self._last_time_ms = h.time_ms
        self.rounds.observe(commit.round + 1)
        ex, st, sto = self.node.last_apply_s
        self.phase.labels("execute").observe(ex)
        self.phase.labels("state").observe(st)
        self.phase.labels("commit").observe(sto)
        self.block_txs.observe(len(hashes))
        self.events.inc(sum(len(r.events) for r in receipts))
        self.observe_vote_quorums()

    def observe_vote_quorums(self) -> None:
        """Move the consensus reactor's recorded first-vote-to-quorum delays into the histogram."""
        delays = getattr(self.node.consensus, "quorum_delays", None)
        while delays is not None:
            try:  # a scrape and the commit hook may drain at once: popleft is atomic, the emptiness test is not
                kind, ms = delays.popleft()
            except IndexError:
                break
            self.vote_quorum.labels("prevote" if kind == PREVOTE else "precommit").observe(ms / 1000)

    def get_route_label(self, request: Request) -> str:
        """The route template (``/blocks/{height}``), not the raw path, so labels stay few."""
        route = request.scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        if path not in self._routes:
            if len(self._routes) >= MAX_ROUTE_LABELS:
                return "other"
            self._routes.add(path)
        return path

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Time every HTTP request."""
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            self.api.labels(self.get_route_label(request), request.method, str(status)).observe(
                time.perf_counter() - t0)

    def render(self) -> Response:
        """The exposition for a scrape."""
        self.observe_vote_quorums()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


def get_readiness(node: Node) -> tuple[bool, dict[str, Any]]:
    """Whether the node is ready for traffic: consensus runs, it reaches more than 2/3 of the voting power
    (itself and its connected validator peers), and consensus is not behind its stored tip (not syncing)."""
    d = node.consensus
    tip = node.get_tip().height
    if d is None:
        return False, {"reason": "consensus is not running", "height": tip}
    vals = node.genesis.validators
    reach = {node.key.address} if node.validator is not None else set()
    t = d.transport
    peers = sorted(p.spec.name for p in t.peers.values()) if t is not None else []
    if t is not None:
        reach |= {p.spec.address for p in t.peers.values()}
    power = sum(v.power for v in vals.validators if v.address in reach)
    connected = 3 * power > 2 * vals.total_power
    synced = d.core.height >= tip
    doc = {"height": tip, "consensus_height": d.core.height, "peers": peers, "reachable_power": power,
           "total_power": vals.total_power, "connected": connected, "synced": synced}
    if not connected:
        doc["reason"] = "connected validators hold at most 2/3 of the voting power"
    elif not synced:
        doc["reason"] = "catching up: consensus is behind the stored tip"
    return connected and synced, doc
