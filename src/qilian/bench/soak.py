"""``qilian bench soak``: the issue-18 soak — a 4-validator network under ``--max`` Ed25519 evidence load for N
minutes, reported per minute: committed TPS, each node's RSS, and the store's disk bytes per transaction.

Why its own command: throughput that holds for the first minute and sags after twenty is a storage (or memory)
problem the 30-second network bench cannot see. The network is started here (not inside the network bench) so the
node processes can be sampled; the load itself is :func:`qilian.bench.network.run_network_bench` attached to it.
Targets (issue 18): last-minute TPS ≥ 0.9 × first-minute TPS, RSS that plateaus.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from qilian.bench.network import NetBenchConfig, NetBenchResult, _configure_bench_nodes, run_network_bench
from qilian.storage.engine import get_disk_bytes

RSS_SAMPLE_S: Final = 5.0
"""How often node RSS is sampled (the per-minute figure is the last sample of the minute)."""
SOAK_MEMPOOL_TXS: Final = 200_000
"""Mempool bound per node for the soak (as the network bench sets it)."""
SOAK_PRESIGNED_PER_MINUTE: Final = 100_000
"""Transactions signed up front per minute of soak (~1.7 GB of the bench's memory for 30 minutes): more than the
chain commits (~1,000–1,800 TPS here) plus the mempools' backlog. With the network bench's own bound (2,000,000) a
30-minute soak ran out at minute 29 and its last minute read 0 TPS."""


@dataclass
class SoakResult:
    minutes: list[dict[str, Any]] = field(default_factory=list)
    """Per minute: committed TPS, RSS MiB per node (``VmRSS``, and ``RssAnon``: without mapped file pages) and
    node0's memory by part (``qilian_memory_bytes``), all from the minute's last sample."""
    net: NetBenchResult | None = None
    disk_bytes_node0: int = 0
    bytes_per_tx: float = 0.0


def get_rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident set size of a process (Linux /proc), MiB; NaN once it is gone. ``field`` "RssAnon": only its own
    memory, without the file pages it has mapped (RocksDB's and LMDB's memory-mapped reads count in ``VmRSS`` as
    ``RssFile``: page cache the kernel shares and reclaims)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def get_memory_parts_mib(api: str) -> dict[str, float]:
    """A node's ``qilian_memory_bytes`` gauges from its ``/metrics``, MiB by part ({} when it does not answer)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    parts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('qilian_memory_bytes{part="'):
            labels, _, value = line.rpartition(" ")
            parts[labels.split('"')[1]] = round(float(value) / 2**20, 1)
    return parts


def run_soak(minutes: float, say: Callable[[str], None], progress: Callable[[str, int, int], None],
             validators: int = 4, engine: str = "") -> SoakResult:
    """Start a network, load it for ``minutes``, sample the nodes, stop it. ``engine``: the nodes' store engine
    (``[store] engine``; "" = the default)."""
    from qilian.bench.ports import get_free_port_block
    from qilian.node.config import init_network, load_config, save_config
    from qilian.node.launcher import get_node_homes, start_network, stop_network, wait_for_blocks
    from qilian.types.core import ChainParams

    root = Path(tempfile.mkdtemp(prefix="qilian-soak-"))
    api_base = get_free_port_block(validators)
    p2p_base = get_free_port_block(validators, avoid=range(api_base, api_base + validators))
    init_network(root, validators, chain_id="bench", suite_name="ed25519", organisations=("org1",),
                 api_port=api_base, p2p_port=p2p_base, params=ChainParams(block_interval_ms=200, max_block_txs=5000))
    _configure_bench_nodes(root, SOAK_MEMPOOL_TXS)
    if engine:
        for home in get_node_homes(root):
            save_config(replace(load_config(home), store_engine=engine))
    say(f"starting {validators} validators in {root} …")
    launched = start_network(root, detach=False)
    procs = [p for _, p in launched]
    data0 = load_config(get_node_homes(root)[0]).data_path
    samples: list[tuple[float, list[tuple[float, float]], dict[str, float]]] = []
    stop = threading.Event()
    api0 = launched[0][0].api

    def sample() -> None:
        while not stop.is_set():
            rss = [(get_rss_mib(p.pid), get_rss_mib(p.pid, "RssAnon")) for p in procs]
            samples.append((time.monotonic(), rss, get_memory_parts_mib(api0)))
            stop.wait(RSS_SAMPLE_S)

    result = SoakResult()
    try:
        if not wait_for_blocks([lch.api for lch, _ in launched], procs, 60):
            raise RuntimeError(f"the network did not start; see {root}/node*/node.log")
        sampler = threading.Thread(target=sample, daemon=True)
        cfg = NetBenchConfig(validators=validators, suite="ed25519", workload="evidence", max_rate=True,
                             duration_s=minutes * 60, home=root,
                             max_presigned=int(minutes * SOAK_PRESIGNED_PER_MINUTE))
        t_start = time.monotonic()
        sampler.start()
        net = run_network_bench(cfg, say, progress)[0]  # one workload, one result
        stop.set()
        sampler.join(10)
        result.net = net
        result.disk_bytes_node0 = get_disk_bytes(data0)
        result.bytes_per_tx = result.disk_bytes_node0 / max(net.committed, 1)
        # The network bench's series starts when submission starts (after pre-signing): align RSS to it.
        t0 = t_start + max(0.0, (time.monotonic() - t_start) - _get_run_seconds(net))
        # Whole minutes of the series only: a partial last minute (the load ended early) would read as a collapse.
        for m in range(min(int(minutes + 0.999), len(net.series) // 60)):
            committed = sum(int(p["committed"]) for p in net.series if m * 60 <= p["t"] < (m + 1) * 60)
            in_minute = [(rss, parts) for t, rss, parts in samples if t - t0 < (m + 1) * 60]
            result.minutes.append({"minute": m + 1, "tps": round(committed / 60, 1),
                                   "rss_mib": [round(x) for x, _ in in_minute[-1][0]] if in_minute else [],
                                   "anon_rss_mib": [round(x) for _, x in in_minute[-1][0]] if in_minute else [],
                                   "memory_mib_node0": in_minute[-1][1] if in_minute else {}})
    finally:
        stop.set()
        stop_network(root)
    return result


def _get_run_seconds(net: NetBenchResult) -> float:
    """Seconds from the first submission to the end of the network bench's series (its drain included)."""
    return float(len(net.series))
