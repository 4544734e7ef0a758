"""``qilian bench join``: what a new organisation's validator joining under load costs — and the join steps it
shares with the real-process admission tests (governed actions executed with offline endorsements, endpoints
registered by their own organisations, the joining node's home made from ``org keygen`` + ``node join``).

Method (docs/benchmarks.md): start N validators (one organisation each) on 127.0.0.1 and register their endpoints
(``node.endpoint``); a paced load generator submits ``kv.put`` transactions at a fixed rate (default 250/s) in
batches over the public API, round-robin over the validators, for the whole run; a watcher follows validator 0
block by block. Phase **before**: ``phase_s`` seconds of load. Phase **during**: ``org.add`` of a new organisation
(endorsed by a majority), its node started with only genesis + a seed address, catching up from genesis
(``catch-up`` = start → its height reaches the network's), its endpoint registered, ``validator.update`` voted,
until it signs its first commit. Phase **after**: ``phase_s`` seconds more. Reported: committed TPS of each phase
(transactions in the blocks the watcher saw in it ÷ its length), the catch-up time, blocks synced, time from the
decision to the first signature, and the checks that no height was skipped and the set changed exactly at
decided + 2.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from qilian.sdk.client import Client
from qilian.sdk.keys import KeyPair

ENDORSE_DEADLINE_BLOCKS = 1000
"""Endorsements made here are good for this many blocks past the chain's height."""


class JoinError(RuntimeError):
    """A governed step that did not execute; the message carries the chain's answer."""


def execute_endorsed(api: str, submitter: KeyPair, endorsers: Sequence[KeyPair], action: list[Any]) -> dict[str, Any]:
    """Execute a governed action in one transaction: ``submitter`` sends ``gov.execute`` carrying the offline
    endorsements of ``endorsers`` (each an admin of another organisation). Waits for the commit; JoinError
    unless its receipt is ok."""
    from qilian.execution.modules.gov import compute_endorsement

    with Client(api) as c:
        status = c.get_status()
        deadline = int(status["height"]) + ENDORSE_DEADLINE_BLOCKS
        ends = [compute_endorsement(k.suite, k.private_key, k.public_key, status["chain_id"], action, deadline)
                for k in endorsers]
        res = c.call(submitter, "gov", "execute", [action, deadline, ends])
    receipt = res.get("receipt") or {}
    if res.get("status") != "committed" or receipt.get("status") != "ok":
        raise JoinError(f"{action[0]} did not execute: {res.get('status')} {receipt.get('error')}")
    return res


def register_endpoints(api: str, entries: Iterable[tuple[KeyPair, bytes, str]]) -> None:
    """Each organisation's admin registers its node's endpoint (``node.endpoint``, SELF: the admin alone):
    entries of (admin key, node public key, ``host:port``)."""
    for admin, node_key, endpoint in entries:
        execute_endorsed(api, admin, (), ["node.endpoint", node_key, endpoint])


def wait_until(what: str, cond: Any, timeout_s: float, interval_s: float = 0.1) -> float:
    """Poll ``cond()`` until true (HTTP errors count as not yet); seconds it took, or JoinError on timeout."""
    t0 = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - t0
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() - t0 > timeout_s:
            raise JoinError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def get_height(api: str) -> int:
    """A node's committed height."""
    return int(httpx.get(api + "/status", timeout=5).json()["height"])


def get_signers(api: str, height: int) -> set[str]:
    """Addresses (hex) whose precommits are in the commit of ``height``."""
    doc = httpx.get(f"{api}/blocks/{height}", timeout=5).json()
    return {s["validator"] for s in (doc.get("commit") or {}).get("signatures", [])}


@dataclass(frozen=True)
class Joiner:
    """A joining organisation's node and keys, made by ``org keygen`` + ``node join``."""

    org: str
    """Its organisation."""
    home: Path
    """The node's home."""
    node_key: KeyPair
    """The node key."""
    admin: KeyPair
    """The organisation's admin key."""
    org_json: Path
    """Its public org.json (what ``org add`` reads)."""
    api: str
    """The node's API URL."""
    p2p: str
    """``host:port`` of its P2P listener."""

    def org_add_action(self) -> list[Any]:
        """``org.add`` of this organisation with its admin key and its node key (role validator)."""
        import json

        doc = json.loads(self.org_json.read_text())
        members = [[m["name"], bytes.fromhex(m["public_key"]), list(m["roles"])] for m in doc["members"]]
        members += [[n["name"], bytes.fromhex(n["public_key"]), ["validator"]] for n in doc["nodes"]]
        return ["org.add", self.org, members, {"title": f"{self.org} (joined at run time)"}]


def make_joiner(root: Path, org: str, suite: str, genesis: Path, seed: str, api_port: int, p2p_port: int,
                timeouts: dict[str, int], state_sync: bool = False) -> Joiner:
    """Keys, TLS identity and home of a new organisation's node that knows only ``genesis`` and ``seed`` (and,
    with ``state_sync``, joins from a snapshot: ``node join --state-sync``)."""
    from qilian.node.bootstrap import process_node_join, process_org_keygen
    from qilian.sdk.keys import load_key

    res = process_org_keygen(root / org, org, suite, 1, "127.0.0.1", p2p_port, api_port)
    home = res.node_homes[0]
    process_node_join(home, genesis, [seed], timeouts=timeouts, state_sync=state_sync)
    node_key = load_key(next((home / "keys").glob("*.pem")))
    admin = load_key(res.key_files[f"{org}-admin"])
    return Joiner(org, home, node_key, admin, res.org_json, f"http://127.0.0.1:{api_port}",
                  f"127.0.0.1:{p2p_port}")


# -- the benchmark ------------------------------------------------------------------------------------------

WATCH_INTERVAL_S = 0.05
"""How often the watcher polls validator 0 for new blocks."""
JOIN_TIMEOUT_S = 300.0
"""Longest any step of the join may take before the run is abandoned."""
MAX_RATE = 5_000
"""Highest offered load (transactions per second) the generator paces."""


@dataclass(frozen=True)
class JoinBenchConfig:
    """What to run."""

    validators: int = 4
    """Validators at the start (one organisation each); the joiner makes N + 1."""
    suite: str = "ed25519"
    """Crypto suite."""
    rate: int = 250
    """Offered load in transactions per second (kv.put), for the whole run."""
    batch: int = 25
    """Transactions per POST /txs/batch (batches are paced to the rate)."""
    clients: int = 4
    """Client threads sharing the schedule."""
    phase_s: float = 20.0
    """Seconds of the phases before and after the join."""
    block_interval_ms: int = 200
    """Block interval of the network."""
    out_dir: Path = Path("bench-results")
    """Where the JSON and markdown reports go."""


@dataclass
class JoinBenchResult:
    """What was measured (written as JSON)."""

    config: dict[str, Any]
    machine: dict[str, Any]
    tps: dict[str, float] = field(default_factory=dict)
    """Committed transactions per second in each phase (before, during, after)."""
    offered: dict[str, float] = field(default_factory=dict)
    """Transactions per second the generator submitted in each phase."""
    phase_s: dict[str, float] = field(default_factory=dict)
    """Length of each phase."""
    org_add_s: float = 0.0
    """From submitting ``org.add`` to its commit."""
    catch_up_s: float = 0.0
    """From starting the joining node to its height reaching the network's (it syncs from genesis)."""
    catch_up_blocks: int = 0
    """Height the joiner had to reach when it caught up."""
    blocks_synced: int = 0
    """Blocks the joiner took through block sync (the rest followed consensus)."""
    decided_height: int = 0
    """Height of the block that executed ``validator.update``."""
    first_signed_height: int = 0
    """First height whose commit the new validator signed."""
    decision_to_signature_s: float = 0.0
    """From the decision's commit to the first commit it signed."""
    join_total_s: float = 0.0
    """The whole 'during' phase: org.add to the first signature."""
    set_changed_at: int = 0
    """First height whose header names the new validator set (must be decided + 2)."""
    heights_contiguous: bool = False
    """Every height from the first to the last was seen, none skipped."""
    rejected: int = 0
    """Transactions the nodes refused at submission (mempool full or otherwise)."""
    errors: dict[str, int] = field(default_factory=dict)
    network_dir: str = ""


class _LoadGenerator:
    """Paced kv.put submissions in batches from several client threads sharing one schedule (batch k is due at
    k × batch ÷ rate s), round-robin over the given APIs; counts what was sent when. A thread that falls behind
    sends at once, so the offered rate holds while the machine is busy."""

    def __init__(self, apis: list[str], key: KeyPair, chain_id: str, rate: int, batch: int, clients: int = 4):
        self.apis, self.key, self.chain_id = apis, key, chain_id
        self.rate, self.batch = min(rate, MAX_RATE), batch
        self.sent: list[tuple[float, int]] = []
        self.rejected = 0
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._height = 0
        self._t0 = 0.0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        self._height = get_height(self.apis[0])
        self._t0 = time.monotonic()
        for t in self._threads:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)

    def _run(self) -> None:
        from qilian.sdk.client import build_tx
        from qilian.types.codec import encode_trusted

        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                with self._lock:
                    k = self._next
                    self._next += 1
                due = self._t0 + k * self.batch / self.rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                if k % 40 == 0:
                    try:
                        self._height = get_height(self.apis[0])
                    except httpx.HTTPError:
                        pass
                txs = [build_tx(self.key, self.chain_id, "kv", "put", [f"join-{k}-{j}".encode(), b"v" * 100],
                                self._height + 500).encode() for j in range(self.batch)]
                try:
                    r = http.post(self.apis[k % len(self.apis)] + "/txs/batch", content=encode_trusted(txs),
                                  headers={"content-type": "application/octet-stream"})
                    doc = r.json()
                    with self._lock:
                        self.rejected += len(doc.get("rejected", []))
                        self.sent.append((time.monotonic(), len(txs)))
                except (httpx.HTTPError, ValueError) as exc:
                    with self._lock:
                        self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1

    def count(self, t0: float, t1: float) -> int:
        return sum(n for t, n in self.sent if t0 <= t < t1)


class _BlockWatcher(threading.Thread):
    """Follows one node block by block: (height, time seen, transactions, validators hash)."""

    def __init__(self, api: str, start: int):
        super().__init__(daemon=True)
        self.api = api
        self.height = start
        self.blocks: list[tuple[int, float, int, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.api, timeout=10) as http:
            while not self.stop.is_set():
                try:
                    tip = int(http.get("/status").json()["height"])
                    while self.height < tip:
                        header = http.get(f"/blocks/{self.height + 1}").json()["header"]
                        self.height += 1
                        self.blocks.append((self.height, time.monotonic(), int(header["tx_count"]),
                                            str(header["validators_hash"])))
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                time.sleep(WATCH_INTERVAL_S)

    def tps(self, t0: float, t1: float) -> float:
        return sum(n for _, t, n, _ in self.blocks if t0 <= t < t1) / max(t1 - t0, 1e-9)


def run_join_bench(cfg: JoinBenchConfig, say: Callable[[str], None]) -> JoinBenchResult:
    """Run one join-under-load benchmark; see the module docstring for the method."""
    from qilian.bench.network import _configure_bench_nodes, get_machine
    from qilian.bench.ports import get_free_port_block
    from qilian.node.config import LOCAL_TIMEOUTS, init_network, load_config
    from qilian.node.launcher import start_network, stop_network, wait_for_blocks
    from qilian.sdk.keys import load_key
    from qilian.types.core import ChainParams

    n = cfg.validators
    if not 1 <= n <= 32:
        raise ValueError("--validators is 1..32")
    root = Path(tempfile.mkdtemp(prefix="qilian-bench-join-"))
    api = get_free_port_block(n + 1)
    p2p = get_free_port_block(n + 1, avoid=range(api, api + n + 1))
    orgs = tuple(f"org{i + 1}" for i in range(n))
    init_network(root, n, chain_id="bench-join", suite_name=cfg.suite, organisations=orgs, api_port=api,
                 p2p_port=p2p, params=ChainParams(block_interval_ms=cfg.block_interval_ms))
    _configure_bench_nodes(root, 200_000)
    result = JoinBenchResult(config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                             machine=get_machine(), network_dir=str(root))
    say(f"starting {n} validators in {root} …")
    launched = start_network(root, detach=False)
    apis = [lch.api for lch, _ in launched]
    joiner_proc: subprocess.Popen[bytes] | None = None
    load: _LoadGenerator | None = None
    watcher: _BlockWatcher | None = None
    try:
        if not wait_for_blocks(apis, [p for _, p in launched], 60):
            raise JoinError(f"the network did not start; see {root}/node*/node.log")
        admins = [load_key(root / "keys" / f"{o}-admin.pem") for o in orgs]
        register_endpoints(apis[0], [(admins[i], load_key(root / f"node{i}" / "keys" / f"node{i}.pem").public_key,
                                      f"127.0.0.1:{load_config(root / f'node{i}').p2p_port}") for i in range(n)])
        need = (n + 1) // 2 + 1  # MAJORITY of the n + 1 organisations once the joiner is in (also enough of n)
        watcher = _BlockWatcher(apis[0], get_height(apis[0]))
        watcher.start()
        load = _LoadGenerator(apis, load_key(root / "keys" / "org1-client.pem"), "bench-join", cfg.rate, cfg.batch,
                              cfg.clients)
        load.start()
        time.sleep(3)  # warm-up: the pipeline fills
        say(f"phase before: {cfg.phase_s:.0f} s at {cfg.rate} tx/s …")
        b0 = time.monotonic()
        time.sleep(cfg.phase_s)
        b1 = d0 = time.monotonic()
        say("phase during: org.add, start the joiner (genesis + seed), catch up, validator.update, first signature …")
        joiner = make_joiner(root, "joiner", cfg.suite, root / "genesis.json", f"127.0.0.1:{p2p}", api + n, p2p + n,
                             dict(LOCAL_TIMEOUTS))
        execute_endorsed(apis[0], admins[0], admins[1:need], joiner.org_add_action())
        result.org_add_s = round(time.monotonic() - d0, 2)
        log = open(joiner.home / "node.log", "ab")
        started = time.monotonic()
        joiner_proc = subprocess.Popen([sys.executable, "-m", "qilian.cli.main", "node", "start", "--home",
                                        str(joiner.home)], stdout=log, stderr=subprocess.STDOUT,
                                       env=dict(os.environ, PYTHONUNBUFFERED="1"))
        target: list[int] = [0]

        def caught_up() -> bool:
            target[0] = get_height(apis[0])
            return get_height(joiner.api) >= target[0]

        wait_until("the joiner to catch up", caught_up, JOIN_TIMEOUT_S)
        result.catch_up_s = round(time.monotonic() - started, 2)
        result.catch_up_blocks = target[0]
        status = httpx.get(joiner.api + "/status", timeout=5).json()
        result.blocks_synced = int((status.get("consensus") or {}).get("blocks_synced", 0))
        execute_endorsed(apis[0], joiner.admin, (), ["node.endpoint", joiner.node_key.public_key, joiner.p2p])
        res = execute_endorsed(apis[0], admins[0], admins[1:need],
                               ["validator.update", [[joiner.node_key.public_key, 1]]])
        decided_at = time.monotonic()
        result.decided_height = int(res["height"])
        addr = joiner.node_key.address.hex()
        first: list[int] = [0]

        def signed() -> bool:
            for h in range(result.decided_height + 1, get_height(apis[0]) + 1):
                if addr in get_signers(apis[0], h):
                    first[0] = h
                    return True
            return False

        wait_until("the new validator's first signature", signed, JOIN_TIMEOUT_S, 0.05)
        result.first_signed_height = first[0]
        d1 = a0 = time.monotonic()
        result.decision_to_signature_s = round(d1 - decided_at, 2)
        result.join_total_s = round(d1 - d0, 2)
        say(f"phase after: {cfg.phase_s:.0f} s …")
        time.sleep(cfg.phase_s)
        a1 = time.monotonic()
        load.stop.set()
        load.join(30)
        time.sleep(2)  # the last blocks of the phase reach the watcher
        watcher.stop.set()
        watcher.join(30)
        for name, (t0, t1) in {"before": (b0, b1), "during": (d0, d1), "after": (a0, a1)}.items():
            result.phase_s[name] = round(t1 - t0, 2)
            result.tps[name] = round(watcher.tps(t0, t1), 1)
            result.offered[name] = round(load.count(t0, t1) / max(t1 - t0, 1e-9), 1)
        heights = [h for h, _, _, _ in watcher.blocks]
        result.heights_contiguous = heights == list(range(heights[0], heights[-1] + 1)) if heights else False
        hashes = {h: vh for h, _, _, vh in watcher.blocks}
        before_hash = hashes.get(result.decided_height)
        result.set_changed_at = next((h for h in sorted(hashes) if h > result.decided_height
                                      and hashes[h] != before_hash), 0)
        result.rejected = load.rejected
        result.errors = dict(load.errors)
        return result
    finally:
        if load is not None:
            load.stop.set()
        if watcher is not None:
            watcher.stop.set()
        if joiner_proc is not None and joiner_proc.poll() is None:
            joiner_proc.terminate()
            try:
                joiner_proc.wait(15)
            except subprocess.TimeoutExpired:
                joiner_proc.kill()
        stop_network(root)


def format_join_markdown(r: JoinBenchResult) -> str:
    """The report as a markdown table (what docs/benchmarks.md quotes)."""
    c, m = r.config, r.machine
    rows = [
        ("committed TPS before / during / after", " / ".join(f"{r.tps[p]:,.0f}" for p in ("before", "during",
                                                                                          "after"))),
        ("offered tx/s before / during / after", " / ".join(f"{r.offered[p]:,.0f}" for p in ("before", "during",
                                                                                             "after"))),
        ("phase lengths (s)", " / ".join(f"{r.phase_s[p]:.1f}" for p in ("before", "during", "after"))),
        ("org.add (submit → commit)", f"{r.org_add_s:.1f} s"),
        ("catch-up from genesis (start → at the tip)", f"{r.catch_up_s:.1f} s to height {r.catch_up_blocks} "
                                                      f"({r.blocks_synced} blocks by block sync)"),
        ("validator.update decided at / set changed at / first signature at",
         f"{r.decided_height} / {r.set_changed_at} / {r.first_signed_height}"),
        ("decision → first signature", f"{r.decision_to_signature_s:.1f} s"),
        ("whole join (org.add → first signature)", f"{r.join_total_s:.1f} s"),
        ("no height skipped; set changed at decided + 2",
         f"{'yes' if r.heights_contiguous else 'NO'}; "
         f"{'yes' if r.set_changed_at == r.decided_height + 2 else 'NO'}"),
        ("rejected at submission", f"{r.rejected:,}"),
    ]
    return "\n".join([
        f"# qilian bench join — {c['validators']} validators + 1 joining, {c['suite']}, {c['rate']} tx/s offered",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['system']}.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
    ])


def write_join_outputs(r: JoinBenchResult, out_dir: Path) -> tuple[Path, Path]:
    """bench-results/<time>-join.json and .md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = out_dir / f"{stamp}-join-{r.config['suite']}"
    jpath, mpath = base.with_suffix(".json"), base.with_suffix(".md")
    jpath.write_text(json.dumps(asdict(r), indent=2))
    mpath.write_text(format_join_markdown(r))
    return jpath, mpath


__all__ = ["ENDORSE_DEADLINE_BLOCKS", "JoinBenchConfig", "JoinBenchResult", "JoinError", "Joiner",
           "execute_endorsed", "format_join_markdown", "get_height", "get_signers", "make_joiner",
           "register_endpoints", "run_join_bench", "wait_until", "write_join_outputs"]
