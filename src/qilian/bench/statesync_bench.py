"""``qilian bench join --state-sync``: how long a node joining a chain of N transactions takes to be validating at
the tip — by state sync, and (the baseline) by block sync from genesis (issue 18).

Method (docs/benchmarks.md, "State sync"):

1. **Build** a chain of ``txs`` kv.put transactions (each a new state key with a ``value_bytes`` value),
   ``txs_per_block`` per block, straight into a one-validator node's store (:class:`qilian.bench.chainbuild
   .ChainBuilder`: the node's own execute-and-commit path, real signatures and commits, no network). Block 1
   registers a joining organisation (``org.add``) with two node keys.
2. **Serve**: start that validator as a node process (P2P on loopback); it keeps producing (empty) blocks.
3. **State sync**: start joiner 1 (``node join --state-sync``: genesis + the validator as seed). Reported from
   its ``/status`` report: time to a verified manifest (includes the server's scan of its state), the window
   blocks (count, MB, blocks/s), the state (entries, MB, MB/s, entries/s), and **time to validating** = process
   start → its height reaches the validator's (it has executed the blocks after its snapshot and follows).
4. **Block sync baseline** (unless ``--no-baseline``): joiner 2 syncs from genesis for at most
   ``baseline_s``; reported: blocks/s, transactions/s and MB/s of block sync, and the time to the tip (or its
   extrapolation from the rate when it does not get there in time).

Everything runs on this machine's cores with the validator: the figures are what one joiner gets from one server
sharing its CPU.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

CHAIN_ID = "bench-statesync"
ENDPOINT_DEADLINE_BLOCKS = 1000


@dataclass(frozen=True)
class StateSyncBenchConfig:
    """What to run."""

    txs: int = 1_000_000
    """Transactions in the chain (each writes one new state key)."""
    txs_per_block: int = 2000
    """Transactions per built block."""
    value_bytes: int = 100
    """Bytes of each value written."""
    suite: str = "ed25519"
    """Crypto suite."""
    block_interval_ms: int = 500
    """Block interval of the running validator (after the build)."""
    baseline: bool = True
    """Also measure block sync from genesis."""
    baseline_s: float = 120.0
    """Longest the baseline joiner runs."""
    timeout_s: float = 600.0
    """Longest the state-sync joiner may take to reach the tip."""
    out_dir: Path = Path("bench-results")
    """Where the JSON and markdown reports go."""
    reuse: Path | None = None
    """A directory an earlier run built (its chain is reused: the joiners start from empty data directories)."""


@dataclass
class StateSyncBenchResult:
    """What was measured (written as JSON)."""

    config: dict[str, Any]
    machine: dict[str, Any]
    build: dict[str, Any] = field(default_factory=dict)
    """Chain build: transactions, blocks, seconds, store MB, state keys."""
    state_sync: dict[str, Any] = field(default_factory=dict)
    """The state-sync joiner: its /status report and the time to validating."""
    block_sync: dict[str, Any] = field(default_factory=dict)
    """The genesis-sync joiner: rate and time to the tip (or its extrapolation)."""
    home: str = ""


def _wait(what: str, cond: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> float:
    t0 = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - t0
        except (httpx.HTTPError, KeyError, ValueError, TypeError):
            pass
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def _height(api: str) -> int:
    return int(httpx.get(api + "/status", timeout=5).json()["height"])


def _start(home: Path, port: int) -> subprocess.Popen[bytes]:
    log = open(home / "node.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "qilian.cli.main", "node", "start", "--home", str(home),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def build_chain(root: Path, cfg: StateSyncBenchConfig, api: int, p2p: int, say: Callable[[str], None],
                ) -> tuple[Path, list[Path], dict[str, Any], list[int]]:
    """The validator's home with the built chain, the joiners' homes, the build figures, and the cumulative
    encoded block bytes by height (index h: bytes of blocks 1..h)."""
    from qilian.bench.chainbuild import ChainBuilder
    from qilian.node.bootstrap import process_node_join, process_org_keygen
    from qilian.node.config import init_home, load_config, save_config
    from qilian.node.node import Node
    from qilian.sdk.client import build_tx
    from qilian.sdk.keys import load_key
    from qilian.types.core import ChainParams

    home = root / "validator"
    params = ChainParams(block_interval_ms=cfg.block_interval_ms,
                         max_block_txs=max(cfg.txs_per_block, ChainParams().max_block_txs))
    init_home(home, chain_id=CHAIN_ID, suite_name=cfg.suite, organisations=("org1",), api_port=api, params=params)
    vcfg = load_config(home)
    save_config(replace(vcfg, p2p_host="127.0.0.1", p2p_port=p2p))
    org = process_org_keygen(root / "epsilon", "epsilon", cfg.suite, 2, "127.0.0.1", p2p + 1, api + 1)
    joiners = list(org.node_homes)
    for i, jh in enumerate(joiners):
        process_node_join(jh, home / "genesis.json", [f"127.0.0.1:{p2p}"], state_sync=(i == 0),
                          timeouts=None)
    doc = json.loads(org.org_json.read_text())
    members = [[m["name"], bytes.fromhex(m["public_key"]), list(m["roles"])] for m in doc["members"]]
    members += [[n["name"], bytes.fromhex(n["public_key"]), ["observer"]] for n in doc["nodes"]]
    action = ["org.add", "epsilon", members, {"title": "epsilon (joins by state sync)"}]

    node = Node(load_config(home))
    try:
        builder = ChainBuilder(node)
        admin = load_key(home / "keys" / "org1-admin.pem")
        client = load_key(home / "keys" / "org1-client.pem")
        sizes = [0]
        gov = build_tx(admin, CHAIN_ID, "gov", "execute", [action, ENDPOINT_DEADLINE_BLOCKS, []], 500)
        b = builder.process_block([gov])
        sizes.append(sizes[-1] + len(b.encode()))
        receipts = node.store.get_receipts(1) or []
        if not receipts or receipts[0].status != 0:
            raise RuntimeError(f"org.add did not execute: {receipts[0].error if receipts else 'no receipt'}")
        t0 = time.monotonic()
        done = 0
        last_say = t0
        while done < cfg.txs:
            n = min(cfg.txs_per_block, cfg.txs - done)
            b = builder.process_block(builder.make_put_txs(client, n, cfg.value_bytes))
            sizes.append(sizes[-1] + len(b.encode()))
            done += n
            if time.monotonic() - last_say > 10:
                last_say = time.monotonic()
                say(f"built {done:,} transactions ({done / (last_say - t0):,.0f} tx/s)")
        seconds = time.monotonic() - t0
        build = {"txs": done, "blocks": node.get_tip().height, "seconds": round(seconds, 1),
                 "tx_per_s": round(done / max(seconds, 1e-9)), "store_mb": round(node.store.get_disk_bytes() / 1e6),
                 "block_mb": round(sizes[-1] / 1e6, 1)}
    finally:
        node.close()
    return home, joiners, build, sizes


def run_statesync_bench(cfg: StateSyncBenchConfig, say: Callable[[str], None]) -> StateSyncBenchResult:
    """Run the benchmark; see the module docstring."""
    from qilian.bench.network import get_machine
    from qilian.bench.ports import get_free_port_block
    from qilian.node.config import load_config

    result = StateSyncBenchResult(config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                                  machine=get_machine())
    if cfg.reuse is not None:
        root = cfg.reuse
        saved = json.loads((root / "build.json").read_text())
        result.build, sizes = saved["build"], saved["sizes"]
        home, joiners = root / "validator", [Path(p) for p in saved["joiners"]]
        for jh in joiners:
            for d in ("data", "data.statesync"):
                shutil.rmtree(jh / d, ignore_errors=True)
        api = load_config(home).api_port
        say(f"reusing the chain built in {root}: {result.build}")
    else:
        root = Path(tempfile.mkdtemp(prefix="qilian-bench-statesync-"))
        api = get_free_port_block(3)
        p2p = get_free_port_block(3, avoid=range(api, api + 3))
        say(f"building a chain of {cfg.txs:,} transactions in {root} …")
        home, joiners, result.build, sizes = build_chain(root, cfg, api, p2p, say)
        (root / "build.json").write_text(json.dumps({"build": result.build, "sizes": sizes,
                                                     "joiners": [str(j) for j in joiners]}))
        say(f"built: {result.build}")
    result.home = str(root)
    vapi = f"http://127.0.0.1:{api}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(_start(home, api))
        _wait("the validator's API", lambda: _height(vapi) >= result.build["blocks"], 120)
        # state sync
        japi = f"http://127.0.0.1:{load_config(joiners[0]).api_port}"
        say("state sync: joiner 1 starts …")
        t0 = time.monotonic()
        procs.append(_start(joiners[0], load_config(joiners[0]).api_port))
        target = [0]

        def at_tip() -> bool:
            target[0] = _height(vapi)
            return _height(japi) >= target[0]

        _wait("the state-sync joiner to reach the tip", at_tip, cfg.timeout_s)
        to_tip = time.monotonic() - t0
        st = httpx.get(japi + "/status", timeout=5).json()
        report = (st.get("state_sync") or {}).get("report") or {}
        result.state_sync = {"time_to_validating_s": round(to_tip, 2), "tip": target[0], **report,
                             "blocks_after_snapshot": target[0] - int(report.get("height", 0)),
                             "node_start_to_api_s": round(to_tip - float(report.get("total_s", 0)), 2)}
        say(f"state sync: {result.state_sync}")
        _stop(procs.pop())
        if cfg.baseline:
            bapi = f"http://127.0.0.1:{load_config(joiners[1]).api_port}"
            say(f"block sync from genesis: joiner 2, at most {cfg.baseline_s:.0f} s …")
            t0 = time.monotonic()
            procs.append(_start(joiners[1], load_config(joiners[1]).api_port))
            samples: list[tuple[float, int]] = []
            tip = _height(vapi)
            while time.monotonic() - t0 < cfg.baseline_s:
                try:
                    h = _height(bapi)
                    samples.append((time.monotonic() - t0, h))
                    if h >= tip:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1.0)
            last_t, last_h = samples[-1] if samples else (time.monotonic() - t0, 0)
            first = next(((t, h) for t, h in samples if h > 0), (last_t, 0))
            rate = (last_h - first[1]) / max(last_t - first[0], 1e-9)
            mb = sizes[min(last_h, len(sizes) - 1)] / 1e6
            txs_synced = max(0, min(last_h - 1, result.build["blocks"] - 1)) * cfg.txs_per_block
            result.block_sync = {
                "seconds": round(last_t, 1), "height": last_h, "tip": tip, "reached_tip": last_h >= tip,
                "blocks_per_s": round(rate, 2), "tx_per_s": round(txs_synced / max(last_t - first[0], 1e-9)),
                "mb_per_s": round(mb / max(last_t - first[0], 1e-9), 2),
                "time_to_tip_s": round(last_t if last_h >= tip else first[0] + (tip - first[1]) / max(rate, 1e-9),
                                       1),
                "extrapolated": last_h < tip}
            say(f"block sync: {result.block_sync}")
        return result
    finally:
        for p in reversed(procs):
            _stop(p)


def format_statesync_markdown(r: StateSyncBenchResult) -> str:
    """The report as a markdown table (what docs/benchmarks.md quotes)."""
    c, m, b, s, k = r.config, r.machine, r.build, r.state_sync, r.block_sync
    rows = [
        ("chain", f"{b['txs']:,} txs in {b['blocks']:,} blocks ({c['txs_per_block']:,} per block, "
                  f"{c['value_bytes']}-byte values); store {b['store_mb']:,} MB, blocks {b['block_mb']:,} MB"),
        ("build (offline, one-validator commit path)", f"{b['seconds']:,} s ({b['tx_per_s']:,} tx/s)"),
        ("state sync: snapshot height / chunks", f"{s.get('height', 0):,} / {s.get('chunks', 0):,}"),
        ("manifest (incl. the server's scan of its state)", f"{s.get('manifest_s', 0)} s"),
        ("window blocks fetched + checked + indexed", f"{s.get('window_blocks', 0):,} blocks, "
                                                      f"{s.get('window_bytes', 0) / 1e6:,.1f} MB in "
                                                      f"{s.get('window_s', 0)} s "
                                                      f"({s.get('window_blocks_per_s', 0)} blocks/s)"),
        ("state fetched + checked + stored", f"{s.get('entries', 0):,} entries, "
                                             f"{s.get('state_bytes', 0) / 1e6:,.1f} MB in {s.get('state_s', 0)} s "
                                             f"({s.get('state_mb_per_s', 0)} MB/s, "
                                             f"{s.get('entries_per_s', 0):,} entries/s)"),
        ("final batch + swap", f"{s.get('finish_s', 0)} s"),
        ("**time to validating** (process start → at the tip)", f"**{s.get('time_to_validating_s', 0)} s** "
                                                                 f"({s.get('blocks_after_snapshot', 0)} blocks "
                                                                 f"after the snapshot executed)"),
    ]
    if k:
        rows += [
            ("block sync from genesis: rate", f"{k['blocks_per_s']} blocks/s, {k['tx_per_s']:,} tx/s, "
                                              f"{k['mb_per_s']} MB/s (height {k['height']:,} of {k['tip']:,} "
                                              f"after {k['seconds']} s)"),
            ("block sync from genesis: time to the tip", f"{k['time_to_tip_s']:,} s"
                                                         + (" (extrapolated)" if k["extrapolated"] else "")),
        ]
    return "\n".join([
        f"# qilian bench join --state-sync — {b['txs']:,} transactions, {c['suite']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['system']}.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {a} | {v} |" for a, v in rows),
        "",
    ])


def write_statesync_outputs(r: StateSyncBenchResult, out_dir: Path) -> tuple[Path, Path]:
    """bench-results/<time>-statesync-<suite>.json and .md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = out_dir / f"{stamp}-statesync-{r.config['suite']}"
    jpath, mpath = base.with_suffix(".json"), base.with_suffix(".md")
    jpath.write_text(json.dumps(asdict(r), indent=2))
    mpath.write_text(format_statesync_markdown(r))
    return jpath, mpath


__all__ = ["StateSyncBenchConfig", "StateSyncBenchResult", "build_chain", "format_statesync_markdown",
           "run_statesync_bench", "write_statesync_outputs"]
