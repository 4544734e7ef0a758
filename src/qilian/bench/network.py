"""``qilian bench network``: throughput and latency of a real local network, against the machine's own ceiling.

Method (docs/benchmarks.md): start N validator processes (or attach to a running network), pre-sign every
transaction in worker processes *before* the clock starts, submit them over the public HTTP API in batches
(``POST /txs/batch``) from C client threads — paced to a rate, or as fast as the network admits them with
``--max`` — and follow the chain through ``/status`` and ``/blocks/{h}/tx_hashes``. A transaction's latency is
from the moment its batch was sent to the moment the watcher saw the block that holds it (watcher resolution:
WATCH_INTERVAL_S). The ceiling is what signature checking alone allows on this machine: single-core verifications
per second for the suite × cores ÷ validators sharing the machine (every validator verifies every transaction).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

WATCH_INTERVAL_S = 0.02
"""How often the watcher polls for new blocks (latency resolution)."""
DRAIN_TIMEOUT_S = 30.0
"""After the last submission, how long to wait for accepted transactions to commit before counting them failed."""
MAX_PRESIGNED = 2_000_000
"""Most transactions signed up front (bounds memory and set-up time in ``--max`` runs)."""
WORKLOADS = ("kv", "evidence", "transfer", "trace", "trace-commission", "transfer-asset")
"""kv: built-in key-value puts; evidence: registrations in the evidence system contract (unique digests);
transfer: token transfers in a contract the benchmark deploys first (qilian.bench.contracts_bench.TOKEN_SOURCE);
trace: EPCIS ship/receive pairs moving items between two organisations (items commissioned first, untimed);
trace-commission: one EPCIS commissioning event per transaction;
transfer-asset: transfers of the built-in asset ledger (asset BENCH, created and minted first)."""
BENCH_ASSET = "BENCH"
BENCH_TOKEN_NAME = "bench-token"
BENCH_ORGS = ("org1", "org2")
"""Organisations of a network the benchmark starts: the trace workload ships items from one to the other."""
TRACE_POOL = 50_000
"""Most items commissioned for the trace workload. Pair p moves item p % pool, alternately org1 → org2 and back,
so an item is shipped again only 2 × pool transactions later — far beyond the backlog a saturated network holds
(a few seconds of throughput), so a receive never precedes the ship it completes."""
TRACE_EVENT_TIME = "2025-05-01T08:00:00+08:00"


@dataclass(frozen=True)
class NetBenchConfig:
    """What to run."""

    validators: int = 4
    suite: str = "ed25519"
    workload: str = "kv"
    rate: int | None = None
    """Target submissions per second; None with ``max_rate`` for as fast as admitted."""
    max_rate: bool = True
    duration_s: float = 30.0
    clients: int = 4
    batch: int = 250
    """Transactions per POST /txs/batch."""
    block_interval_ms: int = 200
    indexer: str = "sqlite"
    """``[indexer] backend`` of the validators started: ``sqlite`` (the default config) or ``off``."""
    home: Path | None = None
    """Attach to the running network of this home (``qilian up --detach``) instead of starting one."""
    out_dir: Path = Path("bench-results")
    max_presigned: int = MAX_PRESIGNED
    """Most transactions signed up front; when the run uses them all, submission ends before ``duration_s``."""


@dataclass
class NetBenchResult:
    """What was measured (written as JSON)."""

    config: dict[str, Any]
    machine: dict[str, Any]
    submitted: int = 0
    committed: int = 0
    rejected: int = 0
    failed: int = 0
    """Committed with a failed receipt (the call failed; a fact every node agrees on)."""
    uncommitted: int = 0
    """Admitted but not yet committed when the drain timeout ended the run (a backlog, not a loss)."""
    tps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    ceiling_tps: float = 0.0
    verify_per_s_one_core: float = 0.0
    fraction_of_ceiling: float = 0.0
    blocks: int = 0
    series: list[dict[str, float]] = field(default_factory=list)
    """Per second since the start: committed transactions and their median latency."""
    errors: dict[str, int] = field(default_factory=dict)
    network_dir: str = ""
    node_cpu_s: float = 0.0
    """CPU seconds all validator processes spent from the first submission to the end of the drain."""
    node_cpu_us_per_tx: float = 0.0
    """node_cpu_s per committed transaction: what a workload costs the network, whatever else loads the machine
    (throughput on a shared machine moves with the neighbours' load; this does much less)."""


def get_machine() -> dict[str, Any]:
    """CPU model and core count (what every figure depends on)."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count() or 1, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def get_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc; 0 for one that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def measure_verify_rate(suite_name: str, seconds: float = 1.0) -> float:
    """Single-core signature verifications per second for the suite's transaction signatures."""
    from qilian.crypto import get_suite

    suite = get_suite(suite_name)
    sk = suite.private_key_from_seed(b"\x07" * 32)
    pk = suite.get_public_key(sk)
    msg = b"QILIAN/TX/1\x00" + b"\x11" * 32
    sig = suite.sign(sk, msg)
    n = 0
    t0 = time.perf_counter()
    while True:
        for _ in range(50):
            suite.verify(pk, msg, sig)
        n += 50
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


@dataclass(frozen=True)
class Workload:
    """What the i-th transaction of a run is: shared by the untimed set-up and the signing workers, so both name
    the same items and accounts."""

    name: str
    """One of WORKLOADS."""
    tag: str
    """Unique per run, so identifiers and digests never collide with an earlier run on an attached network."""
    orgs: tuple[str, ...] = ()
    """Organisation of each signing key (``<org>-client.pem``); trace ships between the first two."""
    token: str = ""
    """transfer: address of the benchmark token contract."""
    pool: int = 0
    """trace: items commissioned before the clock starts (:data:`TRACE_POOL`)."""


def compute_trace_item(w: Workload, index: int) -> str:
    """Identifier of the index-th item of a trace run."""
    return f"urn:bench:{w.tag}:{index}"


def build_call(w: Workload, i: int) -> tuple[int, str, str, list[Any]]:
    """Signing key (index into the run's keys), target, method and arguments of the i-th transaction."""
    if w.name == "kv":
        return 0, "kv", "put", [f"{w.tag}-{i}".encode(), b"v" * 100]
    if w.name == "evidence":
        import hashlib

        digest = hashlib.sha256(f"{w.tag}-{i}".encode()).digest()
        return 0, "evidence", "register", [digest, f"document {i}", "bench", ""]
    if w.name == "transfer":
        return 0, w.token, "transfer", [f"account-{i % 1000}", 1]
    if w.name == "trace":  # even i: the custodian ships item p to the other org; odd i: that org receives it
        pair = i // 2
        shipper = (pair // w.pool) % 2
        receiver = 1 - shipper
        item = compute_trace_item(w, pair % w.pool)
        if i % 2 == 0:
            return shipper, "trace", "ship", [{
                "type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping", "eventTime": TRACE_EVENT_TIME,
                "epcList": [item], "destinationList": [{"type": "owning_party", "destination": w.orgs[receiver]}]}]
        return receiver, "trace", "receive", [{"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "receiving",
                                               "eventTime": TRACE_EVENT_TIME, "epcList": [item]}]
    if w.name == "trace-commission":
        return 0, "trace", "commission", [{"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning",
                                           "eventTime": TRACE_EVENT_TIME, "epcList": [f"urn:bench:{w.tag}:{i}"],
                                           "ilmd": {"lotNumber": f"urn:bench:lot:{w.tag}:{i // 1000}"}}]
    if w.name == "transfer-asset":
        import hashlib

        return 0, "asset", "transfer", [BENCH_ASSET, hashlib.sha256(f"account-{i % 1000}".encode()).hexdigest()[:40],
                                        1]
    raise ValueError(f"unknown workload {w.name!r}; choose one of {', '.join(WORKLOADS)}")


def get_workloads(text: str) -> tuple[str, ...]:
    """The workloads of ``--workload a,b,…`` in order (run one after another on the same network, so their
    figures share the machine's load and are compared as ratios)."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if n not in WORKLOADS:
            raise ValueError(f"unknown workload {n!r}; choose one of {', '.join(WORKLOADS)}")
    if not names:
        raise ValueError(f"no workload given; choose one of {', '.join(WORKLOADS)}")
    return names


def _sign_range(key_paths: list[str], chain_id: str, w: Workload, start: int, stop: int,
                expires_at: int) -> list[tuple[bytes, bytes]]:
    """Worker process: sign transactions start..stop-1; returns (encoded, hash) pairs."""
    from qilian.sdk.client import build_tx
    from qilian.sdk.keys import load_key
    from qilian.types.core import compute_tx_hash

    keys = [load_key(Path(p)) for p in key_paths]
    out = []
    for i in range(start, stop):
        signer, to, method, args = build_call(w, i)
        key = keys[signer]
        tx = build_tx(key, chain_id, to, method, args, expires_at)
        out.append((tx.encode(), compute_tx_hash(key.suite, tx.body)))
    return out


def presign(key_paths: list[Path], chain_id: str, w: Workload, n: int, expires_at: int,
            progress: Callable[[int], None]) -> list[tuple[bytes, bytes]]:
    """Sign n transactions in one worker process per core, before any clock starts."""
    workers = os.cpu_count() or 1
    step = 2000
    out: list[tuple[bytes, bytes]] = []
    with ProcessPoolExecutor(workers) as pool:
        futs = [pool.submit(_sign_range, [str(p) for p in key_paths], chain_id, w, s, min(s + step, n), expires_at)
                for s in range(0, n, step)]
        for f in futs:
            out += f.result()
            progress(len(out))
    return out


class _Watcher(threading.Thread):
    """Follows node 0's chain; records when each of our transactions was seen committed."""

    def __init__(self, api: str, start_height: int, sent_at: dict[bytes, float]):
        super().__init__(daemon=True)
        self.api = api
        self.height = start_height
        self.sent_at = sent_at
        self.committed_at: dict[bytes, float] = {}
        self.failed_receipts = 0
        self.blocks = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.api, timeout=10) as http:
            while not self.stop.is_set():
                try:
                    tip = int(http.get("/status").json()["height"])
                    while self.height < tip:
                        doc = http.get(f"/blocks/{self.height + 1}/tx_hashes").json()
                        now = time.monotonic()
                        self.height += 1
                        self.blocks += 1
                        statuses = doc.get("statuses") or ["ok"] * len(doc["tx_hashes"])
                        for h, st in zip(doc["tx_hashes"], statuses, strict=False):
                            b = bytes.fromhex(h)
                            if b in self.sent_at:
                                self.committed_at[b] = now
                                if st != "ok":
                                    self.failed_receipts += 1
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                time.sleep(WATCH_INTERVAL_S)


def _submit_all(apis: list[str], txs: list[tuple[bytes, bytes]], cfg: NetBenchConfig, sent_at: dict[bytes, float],
                errors: dict[str, int], deadline: float, on_sent: Callable[[int], None]) -> int:
    """Client threads sending batches round-robin to the nodes; returns how many were admitted or known."""
    from qilian.types.codec import encode_trusted

    batches = [txs[i:i + cfg.batch] for i in range(0, len(txs), cfg.batch)]
    lock = threading.Lock()
    state = {"next": 0, "admitted": 0}
    t0 = time.monotonic()

    def client(c: int) -> None:
        with httpx.Client(timeout=30) as http:
            while True:
                with lock:
                    k = state["next"]
                    state["next"] += 1
                if k >= len(batches) or time.monotonic() >= deadline:
                    return
                if cfg.rate:
                    due = t0 + k * cfg.batch / cfg.rate
                    if due > time.monotonic():
                        time.sleep(due - time.monotonic())
                batch = batches[k]
                api = apis[k % len(apis)]
                pending = batch
                while pending and time.monotonic() < deadline:
                    now = time.monotonic()
                    for _, h in pending:
                        sent_at.setdefault(h, now)
                    try:
                        r = http.post(api + "/txs/batch", content=encode_trusted([raw for raw, _ in pending]),
                                      headers={"content-type": "application/octet-stream"})
                    except httpx.HTTPError as exc:
                        with lock:
                            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                        time.sleep(0.1)
                        continue
                    doc = r.json()
                    full_at = doc.get("mempool_full_at")
                    with lock:
                        state["admitted"] += doc.get("accepted", 0) + doc.get("known", 0) + doc.get("committed", 0)
                        for rej in doc.get("rejected", []):
                            if rej["error"] != "mempool_full":
                                errors[rej["error"]] = errors.get(rej["error"], 0) + 1
                    on_sent(len(pending) if full_at is None else full_at)
                    if full_at is None:
                        pending = []
                    else:  # back-pressure: the rest waits until there is room
                        pending = pending[full_at:]
                        for _, h in pending:
                            sent_at.pop(h, None)
                        time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(cfg.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return state["admitted"]


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def run_network_bench(cfg: NetBenchConfig, say: Callable[[str], None],
                      progress: Callable[[str, int, int], None]) -> list[NetBenchResult]:
    """Run each workload of ``cfg.workload`` (comma-separated) in turn on one network; see the module docstring
    for the method. One result per workload, in order."""
    from qilian.node.config import init_network, load_network
    from qilian.node.launcher import start_network, stop_network, wait_for_blocks
    from qilian.types.core import ChainParams

    workloads = get_workloads(cfg.workload)
    machine = get_machine()
    say(f"measuring single-core {cfg.suite} verifications/s …")
    vps = measure_verify_rate(cfg.suite)
    owned = cfg.home is None
    root = Path(tempfile.mkdtemp(prefix="qilian-bench-")) if cfg.home is None else cfg.home
    if owned:
        from qilian.bench.ports import get_free_port_block

        api_base = get_free_port_block(cfg.validators)
        p2p_base = get_free_port_block(cfg.validators, avoid=range(api_base, api_base + cfg.validators))
        init_network(root, cfg.validators, chain_id="bench", suite_name=cfg.suite, organisations=BENCH_ORGS,
                     api_port=api_base, p2p_port=p2p_base,
                     params=ChainParams(block_interval_ms=cfg.block_interval_ms, max_block_txs=5000))
        _configure_bench_nodes(root, 200_000, cfg.indexer)
        say(f"starting {cfg.validators} validators in {root} …")
        launched = start_network(root, detach=False)
        procs = [p for _, p in launched]
        apis = [lch.api for lch, _ in launched]
        pids = [p.pid for p in procs]
        if not wait_for_blocks(apis, procs, 60):
            stop_network(root)
            raise RuntimeError(f"the network did not start; see {root}/node*/node.log")
    else:
        from qilian.node.launcher import read_pids

        apis = [n["api"] for n in load_network(root)["nodes"]]
        pids = [int(e["pid"]) for e in read_pids(root)]  # type: ignore[call-overload]
    try:
        return [_run_workload(replace(cfg, workload=wl), root, apis, pids, machine, vps, say, progress)
                for wl in workloads]
    finally:
        if owned:
            stop_network(root)


def _run_workload(cfg: NetBenchConfig, root: Path, apis: list[str], pids: list[int], machine: dict[str, Any],
                  vps: float, say: Callable[[str], None], progress: Callable[[str, int, int], None]
                  ) -> NetBenchResult:
    """One workload on a running network: untimed set-up, pre-signing, then the timed submission and drain."""
    n_validators = len(apis)
    ceiling = vps * machine["cores"] / n_validators
    result = NetBenchResult(config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                            machine=machine, verify_per_s_one_core=round(vps, 1), ceiling_tps=round(ceiling, 1),
                            network_dir=str(root))
    status = httpx.get(apis[0] + "/status", timeout=5).json()
    chain_id = status["chain_id"]
    if status["suite"] != cfg.suite:
        say(f"note: the attached network uses {status['suite']}")
    n = int((cfg.rate or ceiling * 1.5) * cfg.duration_s)
    n = max(cfg.batch, min(n, cfg.max_presigned))
    n -= n % 2  # trace: whole ship/receive pairs
    role = "admin" if cfg.workload in ("transfer", "transfer-asset") else "client"
    key_paths = sorted((root / "keys").glob(f"*-{role}.pem"))
    orgs = tuple(p.name.removesuffix(f"-{role}.pem") for p in key_paths)
    if cfg.workload == "trace" and len(key_paths) < 2:
        raise RuntimeError(f"the trace workload ships between two organisations; {root}/keys has one")
    w = Workload(cfg.workload, datetime.datetime.now(datetime.UTC).strftime("%H%M%S%f"), orgs,
                 _deploy_token(apis[0], key_paths[0]) if cfg.workload == "transfer" else "",
                 min(TRACE_POOL, n // 2) if cfg.workload == "trace" else 0)
    if cfg.workload == "transfer-asset":
        _create_bench_asset(apis[0], key_paths[0])
    if cfg.workload == "trace":
        say(f"commissioning {w.pool:,} items (not timed) …")
        _commission_items(apis[0], key_paths[0], chain_id, w, lambda k: progress("commissioning", k, w.pool))
    height = int(httpx.get(apis[0] + "/status", timeout=5).json()["height"])
    say(f"pre-signing {n:,} {cfg.workload} transactions in {os.cpu_count()} processes …")
    txs = presign(key_paths, chain_id, w, n, height + 900, lambda k: progress("signing", k, n))
    sent_at: dict[bytes, float] = {}
    watcher = _Watcher(apis[0], height, sent_at)
    watcher.start()
    errors: dict[str, int] = {}
    cpu0 = get_cpu_seconds(pids)
    t0 = time.monotonic()
    deadline = t0 + cfg.duration_s
    counter = {"sent": 0}

    def on_sent(k: int) -> None:
        counter["sent"] += k
        progress(f"submitting {cfg.workload}", int(min(time.monotonic() - t0, cfg.duration_s) * 10),
                 int(cfg.duration_s * 10))

    admitted = _submit_all(apis, txs, cfg, sent_at, errors, deadline, on_sent)
    t_end_submit = time.monotonic()
    drain_until = t_end_submit + DRAIN_TIMEOUT_S
    while time.monotonic() < drain_until and len(watcher.committed_at) < admitted:
        progress(f"draining {cfg.workload}", len(watcher.committed_at), max(admitted, 1))
        time.sleep(0.1)
    watcher.stop.set()
    watcher.join(5)
    result.node_cpu_s = round(get_cpu_seconds(pids) - cpu0, 2)
    committed = watcher.committed_at
    lat = sorted((committed[h] - sent_at[h]) * 1000 for h in committed if h in sent_at)
    result.submitted = counter["sent"]
    result.committed = len(committed)
    result.rejected = sum(errors.values())
    result.failed = watcher.failed_receipts
    result.uncommitted = max(0, admitted - len(committed))
    result.errors = errors
    result.blocks = watcher.blocks
    last = max(committed.values()) if committed else t0
    result.tps = round(len(committed) / max(last - t0, 1e-9), 1)
    result.latency_ms = {"p50": round(_percentile(lat, 0.50), 1), "p95": round(_percentile(lat, 0.95), 1),
                         "p99": round(_percentile(lat, 0.99), 1),
                         "mean": round(statistics.fmean(lat), 1) if lat else 0.0}
    result.fraction_of_ceiling = round(result.tps / ceiling, 3) if ceiling else 0.0
    result.node_cpu_us_per_tx = round(result.node_cpu_s * 1e6 / len(committed), 1) if committed else 0.0
    per_sec: dict[int, list[float]] = {}
    for h, t in committed.items():
        if h in sent_at:
            per_sec.setdefault(int(t - t0), []).append((t - sent_at[h]) * 1000)
    last_s = max(per_sec) if per_sec else -1
    result.series = [{"t": s, "committed": len(per_sec.get(s, [])),
                      "p50_ms": round(statistics.median(per_sec[s]), 1) if s in per_sec else float("nan")}
                     for s in range(last_s + 1)]
    return result


def _commission_items(api: str, key_path: Path, chain_id: str, w: Workload, progress: Callable[[int], None]) -> None:
    """Commission the trace workload's items, MAX_EPCS per event, in the custody of the first organisation; waits
    until all are committed (set-up, not timed)."""
    from qilian.apps.trace.epcis import MAX_EPCS
    from qilian.sdk.client import Client, build_tx
    from qilian.sdk.keys import load_key

    key = load_key(key_path)
    with Client(api) as c:
        expires = int(c.get_status()["height"]) + 900
        txs = [build_tx(key, chain_id, "trace", "commission", [{
            "type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning", "eventTime": TRACE_EVENT_TIME,
            "epcList": [compute_trace_item(w, k) for k in range(s, min(s + MAX_EPCS, w.pool))]}], expires)
            for s in range(0, w.pool, MAX_EPCS)]
        for tx in txs:
            c.submit(tx)
        for k, tx in enumerate(txs):
            res = c.submit(tx, wait="commit", timeout=120)
            receipt = res.get("receipt") or {}
            if receipt.get("status") != "ok":
                raise RuntimeError(f"could not commission the trace workload's items: {receipt.get('error')}")
            progress(min((k + 1) * MAX_EPCS, w.pool))


def compute_mean_tps(results: list[NetBenchResult]) -> dict[str, float]:
    """Mean TPS per workload over its repeats in one run (``--workload evidence,trace,evidence,trace``
    alternates them, so load that others put on a shared machine weighs on both alike)."""
    by: dict[str, list[float]] = {}
    for r in results:
        by.setdefault(r.config["workload"], []).append(r.tps)
    return {w: round(statistics.fmean(v), 1) for w, v in by.items()}


def compute_ratios(results: list[NetBenchResult], base: str = "evidence") -> dict[str, float]:
    """Each workload's mean TPS as a fraction of ``base``'s in the same run (of the first workload when ``base``
    did not run): the figure to compare across machines and loads, where absolute TPS is not."""
    means = compute_mean_tps(results)
    ref = means.get(base, means[results[0].config["workload"]] if results else 0.0)
    if not ref:
        return {}
    return {w: round(t / ref, 3) for w, t in means.items()}


def format_comparison(results: list[NetBenchResult], base: str = "evidence") -> str:
    """A markdown table of the workloads of one run in the order they ran, then each workload's mean TPS as a
    ratio of ``base``'s."""
    ratios, means = compute_ratios(results, base), compute_mean_tps(results)
    ref = base if base in means else results[0].config["workload"]
    rows = [f"| {k + 1} | `{r.config['workload']}` | {r.tps:,.0f} | {r.latency_ms.get('p50', 0):,.0f} / "
            f"{r.latency_ms.get('p99', 0):,.0f} | {r.committed:,} / {r.failed:,} / {r.uncommitted:,} | "
            f"{r.node_cpu_us_per_tx:,.0f} |" for k, r in enumerate(results)]
    return "\n".join(["| # | workload | TPS | p50 / p99 ms | committed / failed receipts / uncommitted | "
                      "node CPU µs per tx (all validators) |", "|---|---|---|---|---|---|",
                      *rows, "", f"| workload | mean TPS | ÷ {ref} |", "|---|---|---|",
                      *(f"| `{w}` | {t:,.0f} | {ratios.get(w, 0):.1%} |" for w, t in means.items()), ""])


def _deploy_token(api: str, key_path: Path) -> str:
    """Deploy the benchmark token (or find it deployed) and fund the admin; returns its address."""
    from qilian.bench.contracts_bench import TOKEN_SOURCE
    from qilian.sdk.client import Client
    from qilian.sdk.keys import load_key

    key = load_key(key_path)
    with Client(api) as c:
        res = c.call(key, "contracts", "deploy", [BENCH_TOKEN_NAME, TOKEN_SOURCE, [10**15]])
    receipt = res.get("receipt") or {}
    if receipt.get("status") == "ok":
        return str(receipt["result"])
    if "already deployed" in str(receipt.get("error")):
        return str(receipt["error"]).split(" at ")[1].split(";")[0]
    raise RuntimeError(f"could not deploy the benchmark token: {receipt.get('error')}")


def _create_bench_asset(api: str, key_path: Path) -> None:
    """Create the benchmark asset (or find it created) and mint its admin enough to send from."""
    from qilian.sdk.client import Client
    from qilian.sdk.keys import load_key

    key = load_key(key_path)
    with Client(api) as c:
        res = c.call(key, "asset", "create", [BENCH_ASSET, "benchmark asset", 0])
        error = str((res.get("receipt") or {}).get("error") or "")
        if error and "exists already" not in error:
            raise RuntimeError(f"could not create the benchmark asset: {error}")
        res = c.call(key, "asset", "mint", [BENCH_ASSET, key.address.hex(), 10**15])
    if (res.get("receipt") or {}).get("status") != "ok":
        raise RuntimeError(f"could not mint the benchmark asset: {(res.get('receipt') or {}).get('error')}")


def _configure_bench_nodes(root: Path, max_txs: int, indexer: str = "sqlite") -> None:
    """Benchmarks keep a deeper mempool than the default, so back-pressure does not hide throughput; and the
    validators' ``[indexer] backend``."""
    import tomllib

    import tomli_w

    for home in sorted(root.glob("node*")):
        doc = tomllib.loads((home / "node.toml").read_text())
        doc.setdefault("mempool", {})["max_txs"] = max_txs
        if indexer != "sqlite":
            doc.setdefault("indexer", {})["backend"] = indexer
        (home / "node.toml").write_text(tomli_w.dumps(doc))


def write_outputs(result: NetBenchResult, out_dir: Path) -> tuple[Path, Path, Path | None]:
    """bench-results/<time>.json, .md and .png (the plot needs matplotlib)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = out_dir / f"{stamp}-{result.config['suite']}-{result.config['workload']}"
    jpath = base.with_suffix(".json")
    jpath.write_text(json.dumps(asdict(result), indent=2))
    mpath = base.with_suffix(".md")
    mpath.write_text(format_markdown(result))
    ppath: Path | None = base.with_suffix(".png")
    try:
        _plot(result, ppath)  # type: ignore[arg-type]
    except ImportError:
        ppath = None
    return jpath, mpath, ppath


def format_markdown(r: NetBenchResult) -> str:
    c, m = r.config, r.machine
    mode = f"rate {c['rate']}/s" if c.get("rate") else "max"
    return "\n".join([
        f"# qilian bench network — {c['validators']} validators, {c['suite']}, {c['workload']}, {mode}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['system']}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| committed TPS | {r.tps:,.0f} |",
        f"| latency p50 / p95 / p99 (ms) | {r.latency_ms.get('p50', 0):,.0f} / {r.latency_ms.get('p95', 0):,.0f} / "
        f"{r.latency_ms.get('p99', 0):,.0f} |",
        f"| submitted / committed / rejected / failed receipts / uncommitted at the end | {r.submitted:,} / "
        f"{r.committed:,} / {r.rejected:,} / {r.failed:,} / {r.uncommitted:,} |",
        f"| blocks | {r.blocks:,} |",
        f"| ceiling: {r.verify_per_s_one_core:,.0f} verifications/s/core × {m['cores']} cores ÷ "
        f"{c['validators']} validators | {r.ceiling_tps:,.0f} TPS |",
        f"| achieved / ceiling | {r.fraction_of_ceiling:.1%} |",
        f"| validators' CPU per committed tx (all validators, submission to drain) | {r.node_cpu_us_per_tx:,.0f} µs |",
        "",
        f"Duration {c['duration_s']} s, {c['clients']} clients, batches of {c['batch']}, block interval "
        f"{c['block_interval_ms']} ms.",
        "",
    ])


def _plot(r: NetBenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p["t"] for p in r.series]
    fig, ax1 = plt.subplots(figsize=(8, 4))
    ax1.plot(t, [p["committed"] for p in r.series], color="tab:blue", label="committed tx/s")
    ax1.set_xlabel("seconds since start")
    ax1.set_ylabel("committed tx/s", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(t, [p["p50_ms"] for p in r.series], color="tab:red", label="median latency (ms)")
    ax2.set_ylabel("median submit→commit latency (ms)", color="tab:red")
    c = r.config
    ax1.set_title(f"{c['validators']} validators, {c['suite']}, {c['workload']}: {r.tps:,.0f} TPS, "
                  f"p99 {r.latency_ms.get('p99', 0):,.0f} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
