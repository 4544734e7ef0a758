"""``qilian bench soak``: the issue-18 soak — a 4-validator network under ``--max`` Ed25519 evidence load for N
minutes, reported per minute: committed TPS, each node's RSS, node0's memory by part, CPU seconds by thread (node0's
threads, all nodes, the load, the machine) and node0's seconds in the garbage collector; and at the end the
store's disk bytes per transaction.

Why its own command: throughput that holds for the first minute and sags after twenty is a storage (or memory)
problem the 30-second network bench cannot see. The network is started here (not inside the network bench) so the
node processes can be sampled; the load itself is :func:`qilian.bench.network.run_network_bench` attached to it.
Targets (issue 18): last-minute TPS ≥ 0.9 × first-minute TPS, RSS that plateaus.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from qilian.bench.network import (
    NetBenchConfig,
    NetBenchResult,
    _configure_bench_nodes,
    get_cpu_seconds,
    run_network_bench,
)
from qilian.storage.engine import get_disk_bytes

if TYPE_CHECKING:
    from qilian.node.config import NodeConfig

RSS_SAMPLE_S: Final = 5.0
"""How often node RSS is sampled (the per-minute figure is the last sample of the minute)."""
SOAK_MEMPOOL_TXS: Final = 200_000
"""Mempool bound per node for the soak (as the network bench sets it)."""
SOAK_PRESIGNED_PER_MINUTE: Final = 150_000
"""Transactions signed up front per minute of soak (~2.5 GB of the bench's memory for 30 minutes): more than the
chain commits (~1,300–2,100 TPS here) plus the mempools' backlog. With the network bench's own bound (2,000,000) a
30-minute soak ran out at minute 29 and its last minute read 0 TPS; at 100,000 per minute a 10-minute soak used
them all once the node's garbage collector was tuned."""


@dataclass
class SoakResult:
    minutes: list[dict[str, Any]] = field(default_factory=list)
    """Per minute: committed TPS, RSS MiB per node (``VmRSS``, and ``RssAnon``: without mapped file pages) and
    node0's memory by part (``qilian_memory_bytes``), all from the minute's last sample; and ``cpu_s``, the CPU
    seconds spent within the minute (:func:`_get_minute_cpu`)."""
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


def get_thread_cpu_seconds(pid: int) -> dict[str, float]:
    """A process's user + system CPU seconds so far by kind of thread (Linux /proc): ``main`` (the event loop:
    consensus, admission, P2P, the API), a node pool's name (``execute``: execution, the state tree and the store's
    commit; ``verify``: signature checks; see :mod:`qilian.node.threads`), ``rocksdb`` (RocksDB's flush and
    compaction threads, named ``rocksdb:…``) and ``other``. {} once it is gone.

    Why by thread: a node's commit phases are timed in its log, but on a shared machine a slowing chain can also be
    CPU taken by something the log does not time, such as compaction growing with the store."""
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            head, _, rest = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")
        except OSError:
            continue  # the thread ended between the listing and the read
        fields = rest.split()
        comm = head.partition("(")[2]
        group = ("main" if tid == str(pid) else "rocksdb" if comm.startswith("rocksdb")
                 else comm.removeprefix("qilian-") if comm.startswith("qilian-") else "other")
        groups[group] = groups.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return groups


def get_child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc; [] when it cannot tell)."""
    children: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            children.extend(int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
    except OSError:
        pass
    return children


def get_machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (``/proc/stat``: everything but idle and iowait)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def get_metrics_text(api: str) -> str:
    """A node's ``/metrics`` text ("" when it does not answer)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def get_memory_parts_mib(metrics: str) -> dict[str, float]:
    """The ``qilian_memory_bytes`` gauges of a node's ``/metrics`` text, MiB by part."""
    parts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith('qilian_memory_bytes{part="'):
            labels, _, value = line.rpartition(" ")
            parts[labels.split('"')[1]] = round(float(value) / 2**20, 1)
    return parts


def get_gc_seconds(metrics: str) -> float:
    """Seconds the node has spent in Python's garbage collector, all generations (``qilian_gc_seconds_total``)."""
    return sum(float(line.rpartition(" ")[2]) for line in metrics.splitlines()
               if line.startswith("qilian_gc_seconds_total{"))


def run_soak(minutes: float, say: Callable[[str], None], progress: Callable[[str, int, int], None],
             validators: int = 4, engine: str = "", keep_data: bool = False) -> SoakResult:
    """Start a network, load it for ``minutes``, sample the nodes, stop it. ``engine``: the nodes' store engine
    (``[store] engine``; "" = the default). ``keep_data``: leave the nodes' stores in place (else only their logs
    and keys stay)."""
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
    cpu_samples: list[tuple[float, list[dict[str, float]], float, float, float]] = []
    """Time, CPU seconds per node by thread, the machine's, the load's; node0's seconds in the collector."""
    stop = threading.Event()
    api0 = launched[0][0].api
    node_pids = {p.pid for p in procs}

    def sample() -> None:
        while not stop.is_set():
            rss = [(get_rss_mib(p.pid), get_rss_mib(p.pid, "RssAnon")) for p in procs]
            metrics = get_metrics_text(api0)
            samples.append((time.monotonic(), rss, get_memory_parts_mib(metrics)))
            # The load: this process, its live signing workers and (os.times) the ones that already ended.
            workers = [pid for pid in get_child_pids(os.getpid()) if pid not in node_pids]
            own = os.times()
            load = own.user + own.system + own.children_user + own.children_system + get_cpu_seconds(workers)
            cpu_samples.append((time.monotonic(), [get_thread_cpu_seconds(p.pid) for p in procs],
                                get_machine_cpu_seconds(), load, get_gc_seconds(metrics)))
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
                                   "memory_mib_node0": in_minute[-1][1] if in_minute else {},
                                   "cpu_s": _get_minute_cpu(cpu_samples, t0 + m * 60, t0 + (m + 1) * 60)})
    finally:
        stop.set()
        stop_network(root)
        if not keep_data:
            try:
                process_remove_node_data([load_config(home) for home in get_node_homes(root)])
                say(f"node logs kept in {root}/node*/node.log; the stores were removed (--keep-data keeps them)")
            except (OSError, ValueError) as exc:  # the figures above still stand: report, do not lose them
                say(f"could not remove the nodes' stores under {root}: {exc}")
    return result


def process_remove_node_data(configs: list[NodeConfig]) -> None:
    """Delete each stopped node's store and explorer index, keeping its log, keys and configuration. Why: a
    30-minute soak writes ~16 GB over its four nodes; left in the temporary directory, two of them filled this
    machine's disk and the next soak's nodes stopped with "No space left on device" at minute 16."""
    import shutil

    for cfg in configs:
        for path in (cfg.data_path, cfg.home / "index"):
            shutil.rmtree(path, ignore_errors=True)


_THREAD_ORDER: Final = ("main", "execute", "verify", "snapshot", "statesync", "rocksdb", "other")


def _get_thread_rank(group: str) -> int:
    return _THREAD_ORDER.index(group) if group in _THREAD_ORDER else len(_THREAD_ORDER)


def _get_minute_cpu(cpu_samples: list[tuple[float, list[dict[str, float]], float, float, float]], start: float,
                    end: float) -> dict[str, float]:
    """CPU seconds spent between the samples nearest ``start`` and ``end``: node0's threads by group, all nodes,
    the load (this process and its signing workers) and the whole machine; {} without two samples."""
    inside = [s for s in cpu_samples if start - RSS_SAMPLE_S / 2 <= s[0] <= end + RSS_SAMPLE_S / 2]
    if len(inside) < 2:
        return {}
    (t_a, nodes_a, machine_a, own_a, gc_a), (t_b, nodes_b, machine_b, own_b, gc_b) = inside[0], inside[-1]
    scale = 60.0 / max(t_b - t_a, 1e-9)  # per 60 s, whatever the samples' exact spacing
    out = {f"node0_{g}": round((nodes_b[0].get(g, 0.0) - nodes_a[0].get(g, 0.0)) * scale, 1)
           for g in sorted(nodes_b[0], key=_get_thread_rank)} if nodes_a and nodes_b else {}
    nodes = sum(sum(b.values()) - sum(a.values()) for a, b in zip(nodes_a, nodes_b, strict=True))
    out["node0_gc"] = round((gc_b - gc_a) * scale, 1)  # wall time, within node0's threads' CPU above
    out["nodes"] = round(nodes * scale, 1)
    out["load"] = round((own_b - own_a) * scale, 1)
    out["machine"] = round((machine_b - machine_a) * scale, 1)
    return out


def _get_run_seconds(net: NetBenchResult) -> float:
    """Seconds from the first submission to the end of the network bench's series (its drain included)."""
    return float(len(net.series))
