"""``qilian bench ledger``: the ledger's invariants over a bounded run of a real N-validator network with a
validator SIGKILLed and restarted midway (issue 17's acceptance run; docs/apps/payments.md).

Client threads send random, deliberately conflicting work to random live nodes — transfers between a few hot
accounts (so concurrent spends of one balance race each other), delivery-versus-payment swaps (some offers taken by
two takers in the same batch), escrows and their releases or refunds, and the issuers' mints and burns. A
transaction is *acknowledged* when a node answers that it is committed. One validator is SIGKILLed a third of the
way in and restarted after ``down_s``. At the end, once every node has caught up, each node is checked:

1. every node has the same block ID and state root at every height (so the same state);
2. every acknowledged transaction is in exactly one block of that chain;
3. per asset, supply = minted − burned (summed from the committed ``asset.mint``/``asset.burn`` receipts) = the sum
   of all balances (the paginated holders list, escrow account included);
4. no balance is negative (nor zero: a zero balance is deleted).

This is IO shell code (threads, time, randomness in the driver); what it checks is the pure module's work."""

from __future__ import annotations

import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

SOAK_ORGS: Final = ("bank-a", "bank-b", "bank-c", "bank-d")
"""Organisations of the network; the first three each issue one asset."""
SOAK_ASSETS: Final = (("CNY", "bank-a"), ("HKD", "bank-b"), ("USD", "bank-c"))
"""(symbol, issuer organisation)."""
INITIAL_MINT: Final = 300_000
"""Minted to every signing account of every asset before the clock starts."""
COLD_ACCOUNTS: Final = 24
"""Accounts no key controls that transfers also pay to (they only ever receive)."""
OP_WEIGHTS: Final = (("transfer", 50), ("swap", 20), ("escrow", 12), ("settle", 10), ("burn", 3), ("mint", 5))
"""How often each kind of work is drawn; ``settle`` releases or refunds an escrow the thread opened."""
HOLDERS_PAGE: Final = 200
"""Page size when summing balances through ``GET /apps/assets/{symbol}/holders``."""


@dataclass(frozen=True)
class SoakConfig:
    """What to run."""

    validators: int = 4
    duration_s: float = 60.0
    """Seconds of submission (the checks run after it)."""
    kill: bool = True
    """SIGKILL one validator a third of the way in and restart it."""
    down_s: float = 0.0
    """How long the killed validator stays down (0: a sixth of the duration, at least 5 s)."""
    threads: int = 6
    batch: int = 8
    """Transactions a thread sends in one ``POST /txs/batch`` before waiting for their commits."""
    seed: int = 1
    block_interval_ms: int = 200
    catch_up_s: float = 180.0
    """How long the nodes may take to reach a common height after the submissions end."""


@dataclass
class SoakReport:
    """What was measured and checked (written as JSON by the command)."""

    config: dict[str, Any]
    submitted: int = 0
    acknowledged: int = 0
    unresolved: int = 0
    """Sent but never answered as committed (the node died, or the wait timed out) — allowed either way."""
    unresolved_committed: int = 0
    ops: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per kind of work: acknowledged ``ok`` and ``failed`` receipts (failed = refused by the rules, e.g. a
    conflicting spend that found the balance already gone)."""
    killed: str = ""
    killed_at_s: float = 0.0
    restarted_at_s: float = 0.0
    height: int = 0
    """Common height every node reached and was audited to."""
    assets: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per asset (as seen on node 0): supply, minted, burned, holders and the sum of their balances."""
    nodes_checked: int = 0
    elapsed_s: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class _Node:
    home: Path
    api: str
    proc: subprocess.Popen[bytes] | None
    up: bool = True


class _Driver:
    """The run's shared state: nodes, keys, acknowledgements."""

    def __init__(self, cfg: SoakConfig, root: Path, nodes: list[_Node], chain_id: str):
        from qilian.sdk.keys import load_key

        self.cfg, self.root, self.nodes, self.chain_id = cfg, root, nodes, chain_id
        self.keys = {p.name.removesuffix(".pem"): load_key(p) for p in sorted((root / "keys").glob("*.pem"))}
        self.signers = sorted(self.keys)
        rng = random.Random(cfg.seed)
        self.cold = [rng.randbytes(20).hex() for _ in range(COLD_ACCOUNTS)]
        self.lock = threading.Lock()
        self.acked: dict[str, tuple[str, str]] = {}
        self.unresolved: set[str] = set()
        self.submitted = 0
        self.stop = threading.Event()

    def get_live(self) -> list[_Node]:
        with self.lock:
            return [n for n in self.nodes if n.up]

    def get_height(self, api: str) -> int:
        return int(httpx.get(api + "/status", timeout=5).json()["height"])


def run_ledger_soak(cfg: SoakConfig, say: Callable[[str], None]) -> SoakReport:
    """Start the network, run the work and the kill, check the invariants on every node, stop the network."""
    from qilian.bench.ports import get_free_port_block
    from qilian.node.config import init_network, load_config
    from qilian.node.launcher import get_node_homes, start_network, wait_for_blocks
    from qilian.types.core import ChainParams

    report = SoakReport(config=asdict(cfg))
    t_start = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="qilian-soak-"))
    api_base = get_free_port_block(cfg.validators)
    p2p_base = get_free_port_block(cfg.validators, avoid=range(api_base, api_base + cfg.validators))
    init_network(root, cfg.validators, chain_id="soak", suite_name="ed25519", organisations=SOAK_ORGS,
                 api_port=api_base, p2p_port=p2p_base, params=ChainParams(block_interval_ms=cfg.block_interval_ms),
                 timeouts={"propose_base_ms": 1000, "propose_delta_ms": 500, "prevote_base_ms": 500,
                           "prevote_delta_ms": 500, "precommit_base_ms": 500, "precommit_delta_ms": 500})
    say(f"starting {cfg.validators} validators in {root} …")
    launched = start_network(root, detach=False)
    nodes = [_Node(home, f"http://{load_config(home).api_host}:{load_config(home).api_port}", proc)
             for home, (_, proc) in zip(get_node_homes(root), launched, strict=True)]
    try:
        if not wait_for_blocks([n.api for n in nodes], [p for _, p in launched], 90):
            raise RuntimeError(f"the network did not start; see {root}/node*/node.log")
        d = _Driver(cfg, root, nodes, "soak")
        say("creating and minting the assets …")
        _process_setup(d)
        say(f"sending conflicting transfers, swaps and escrows for {cfg.duration_s:.0f} s"
            + (" with a validator killed midway …" if cfg.kill else " …"))
        t0 = time.monotonic()
        workers = [threading.Thread(target=_process_worker, args=(d, t, report), daemon=True)
                   for t in range(cfg.threads)]
        for w in workers:
            w.start()
        if cfg.kill:
            _process_kill(d, report, t0, say)
        while time.monotonic() < t0 + cfg.duration_s:
            time.sleep(0.2)
        d.stop.set()
        for w in workers:
            w.join(60)
        report.submitted, report.acknowledged = d.submitted, len(d.acked)
        say(f"{report.acknowledged:,} transactions acknowledged; waiting for every node to catch up …")
        _check_all(d, report, say)
    finally:
        _stop_nodes(nodes)
    report.elapsed_s = round(time.monotonic() - t_start, 1)
    return report


def _post_txs(api: str, txs: list[Any]) -> list[int]:
    """POST /txs/batch; the indexes the node admitted (accepted or already known)."""
    from qilian.types.codec import encode_trusted

    r = httpx.post(api + "/txs/batch", content=encode_trusted([t.encode() for t in txs]),
                   headers={"content-type": "application/octet-stream"}, timeout=30)
    if r.status_code != 200:
        return []
    bad = {rej["index"] for rej in r.json().get("rejected", [])}
    full = r.json().get("mempool_full_at")
    return [i for i in range(len(txs)) if i not in bad and (full is None or i < full)]


def _wait_receipt(api: str, tx: Any, timeout: float = 20.0) -> dict[str, Any] | None:
    """The receipt of a committed transaction (re-submitting a known one waits for it), or None."""
    r = httpx.post(api + "/txs", params={"wait": "commit", "timeout": timeout}, content=tx.encode(),
                   headers={"content-type": "application/octet-stream"}, timeout=timeout + 10)
    doc = r.json()
    return doc.get("receipt") if doc.get("status") == "committed" else None


def _process_setup(d: _Driver) -> None:
    """Create the assets and mint INITIAL_MINT of each to every signing account (all acknowledged)."""
    from qilian.sdk.client import build_tx

    api = d.nodes[0].api
    h = d.get_height(api)
    creates = [build_tx(d.keys[f"{org}-admin"], d.chain_id, "asset", "create", [sym, f"{sym} (soak)", 2], h + 100)
               for sym, org in SOAK_ASSETS]
    mints = [build_tx(d.keys[f"{org}-admin"], d.chain_id, "asset", "mint",
                      [sym, d.keys[s].address.hex(), INITIAL_MINT], h + 100)
             for sym, org in SOAK_ASSETS for s in d.signers]
    for group in (creates, mints):
        _post_txs(api, group)
        for tx in group:
            receipt = _wait_receipt(api, tx, 60)
            if receipt is None or receipt["status"] != "ok":
                raise RuntimeError(f"set-up transaction failed: {receipt}")


def _process_worker(d: _Driver, t: int, report: SoakReport) -> None:
    """One client thread: draw a batch of work, send it to a random live node, wait for each commit."""
    from qilian.apps.payments.module import compute_signed_offer
    from qilian.sdk.client import build_tx
    from qilian.types.codec import from_json_value

    rng = random.Random(d.cfg.seed * 1000 + t)
    kinds = [k for k, w in OP_WEIGHTS for _ in range(w)]
    escrows: list[tuple[str, int]] = []  # (payer key name, escrow id) opened by this thread
    while not d.stop.is_set():
        live = d.get_live()
        if not live:
            time.sleep(0.1)
            continue
        node = rng.choice(live)
        try:
            h = d.get_height(node.api)
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        batch: list[tuple[str, Any]] = []
        while len(batch) < d.cfg.batch:
            kind = rng.choice(kinds)
            sym, issuer = rng.choice(SOAK_ASSETS)
            signer = rng.choice(d.signers)
            key = d.keys[signer]
            if kind == "transfer":
                # mostly between the eight keys (funds keep circulating), a quarter out to cold accounts
                to = rng.choice(d.cold) if rng.random() < 0.25 else d.keys[rng.choice(d.signers)].address.hex()
                batch.append((kind, build_tx(key, d.chain_id, "asset", "transfer",
                                             [sym, to, rng.randint(1, 30_000), f"soak {t}"], h + 200)))
            elif kind == "swap":
                want = rng.choice([s for s, _ in SOAK_ASSETS if s != sym])
                maker = d.keys[rng.choice([s for s in d.signers if s != signer])]
                offer = compute_signed_offer(maker.suite, maker.private_key, maker.public_key, d.chain_id,
                                             [sym, rng.randint(1, 40_000), want, rng.randint(1, 40_000), "",
                                              h + 100, rng.getrandbits(62)])
                batch.append((kind, build_tx(key, d.chain_id, "settle", "swap", offer, h + 200)))
                if rng.random() < 0.25:  # the same offer taken by a second taker in the same batch
                    other = d.keys[rng.choice([s for s in d.signers if s != signer])]
                    batch.append((kind, build_tx(other, d.chain_id, "settle", "swap", offer, h + 200)))
            elif kind == "escrow":
                payee = d.keys[rng.choice(d.signers)].address.hex()
                batch.append((kind, build_tx(key, d.chain_id, "settle", "escrow",
                                             [sym, rng.randint(1, 50_000), payee, rng.randint(2, 20), "soak"],
                                             h + 200)))
            elif kind == "settle" and escrows:
                payer, eid = escrows.pop(rng.randrange(len(escrows)))
                method = "release" if rng.random() < 0.6 else "refund"
                batch.append((kind, build_tx(d.keys[payer], d.chain_id, "settle", method, [eid], h + 200)))
            elif kind == "burn":
                batch.append((kind, build_tx(d.keys[f"{issuer}-admin"], d.chain_id, "asset", "burn",
                                             [sym, rng.randint(1, 20_000)], h + 200)))
            elif kind == "mint":
                batch.append((kind, build_tx(d.keys[f"{issuer}-admin"], d.chain_id, "asset", "mint",
                                             [sym, d.keys[rng.choice(d.signers)].address.hex(),
                                              rng.randint(1, 40_000)], h + 200)))
        txs = [tx for _, tx in batch]
        try:
            admitted = _post_txs(node.api, txs)
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        with d.lock:
            d.submitted += len(admitted)
        for i in admitted:
            kind, tx = batch[i]
            tx_hash = _get_hash(tx)
            try:
                receipt = _wait_receipt(node.api, tx)
            except (httpx.HTTPError, ValueError):
                receipt = None
            with d.lock:
                if receipt is None:
                    d.unresolved.add(tx_hash)
                    continue
                d.acked[tx_hash] = (kind, receipt["status"])
                counts = report.ops.setdefault(kind, {"ok": 0, "failed": 0})
                counts["ok" if receipt["status"] == "ok" else "failed"] += 1
            if kind == "escrow" and receipt["status"] == "ok":
                eid = int(from_json_value(receipt["result"])["id"])
                escrows.append((next(s for s in d.signers if d.keys[s].public_key == tx.body.sender), eid))


def _get_hash(tx: Any) -> str:
    from qilian.crypto import get_suite
    from qilian.types.core import compute_tx_hash

    return compute_tx_hash(get_suite("ed25519"), tx.body).hex()


def _process_kill(d: _Driver, report: SoakReport, t0: float, say: Callable[[str], None]) -> None:
    """SIGKILL a validator (not node 0, which the final checks read first) a third of the way in; restart it
    after ``down_s``. Runs in the caller's thread while the workers send."""
    from qilian.node.launcher import start_node

    rng = random.Random(d.cfg.seed + 7)
    victim = d.nodes[rng.randrange(1, len(d.nodes))]
    down = d.cfg.down_s or max(5.0, d.cfg.duration_s / 6)
    time.sleep(max(0.0, t0 + d.cfg.duration_s / 3 - time.monotonic()))
    with d.lock:
        victim.up = False
    assert victim.proc is not None
    victim.proc.kill()
    victim.proc.wait(30)
    report.killed, report.killed_at_s = victim.home.name, round(time.monotonic() - t0, 1)
    say(f"SIGKILLed {victim.home.name} at {report.killed_at_s} s; restarting it in {down:.0f} s …")
    time.sleep(down)
    victim.proc = start_node(victim.home, detach=False)
    report.restarted_at_s = round(time.monotonic() - t0, 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            d.get_height(victim.api)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    with d.lock:
        victim.up = True


def _check_all(d: _Driver, report: SoakReport, say: Callable[[str], None]) -> None:
    """The invariants of the module docstring, on every node; each violation is recorded, none raised."""
    v = report.violations
    with httpx.Client(timeout=30) as http:
        target = max(d.get_height(n.api) for n in d.nodes)
        deadline = time.monotonic() + d.cfg.catch_up_s
        while True:
            heights = []
            for n in d.nodes:
                try:
                    heights.append(d.get_height(n.api))
                except httpx.HTTPError:
                    heights.append(-1)
            if min(heights) >= target:
                break
            if time.monotonic() > deadline:
                v.append(f"nodes did not all reach height {target} in {d.cfg.catch_up_s:.0f} s: {heights}")
                break
            time.sleep(0.5)
        top = min(h for h in heights if h >= 0) if any(h >= 0 for h in heights) else 0
        report.height = top
        say(f"auditing {len(d.nodes)} nodes up to height {top} …")
        seen: dict[str, int] = {}
        minted: dict[str, int] = {s: 0 for s, _ in SOAK_ASSETS}
        burned: dict[str, int] = {s: 0 for s, _ in SOAK_ASSETS}
        for h in range(1, top + 1):
            views = [http.get(f"{n.api}/blocks/{h}").json() for n in d.nodes]
            if len({x["header"]["block_id"] for x in views}) != 1:
                v.append(f"nodes disagree on block {h}")
            if len({x["header"]["state_root"] for x in views}) != 1:
                v.append(f"nodes disagree on the state root in block {h}")
            statuses = http.get(f"{d.nodes[0].api}/blocks/{h}/tx_hashes").json().get("statuses") or []
            for k, tx in enumerate(views[0]["txs"]):
                if tx["hash"] in seen:
                    v.append(f"transaction {tx['hash']} in blocks {seen[tx['hash']]} and {h}")
                seen[tx["hash"]] = h
                if tx["to"] == "asset" and k < len(statuses) and statuses[k] == "ok":
                    if tx["method"] == "mint":
                        minted[tx["args"][0]] += int(tx["args"][2])
                    elif tx["method"] == "burn":
                        burned[tx["args"][0]] += int(tx["args"][1])
        lost = [a for a in d.acked if a not in seen]
        for a in lost[:10]:
            v.append(f"acknowledged transaction {a} is in no block up to height {top}")
        report.unresolved = len(d.unresolved)
        report.unresolved_committed = sum(1 for u in d.unresolved if u in seen)
        for n in d.nodes:
            for sym, _ in SOAK_ASSETS:
                supply, total, holders, negative = _get_ledger(http, n.api, sym)
                if n is d.nodes[0]:
                    report.assets[sym] = {"supply": supply, "minted": minted[sym], "burned": burned[sym],
                                          "holders": holders, "sum_of_balances": total}
                if supply != total:
                    v.append(f"{n.home.name}: {sym} supply {supply} but balances sum to {total}")
                if supply != minted[sym] - burned[sym]:
                    v.append(f"{n.home.name}: {sym} supply {supply} ≠ minted {minted[sym]} − burned {burned[sym]}")
                v.extend(f"{n.home.name}: {sym} balance of {a} is {b}" for a, b in negative)
            report.nodes_checked += 1


def _get_ledger(http: httpx.Client, api: str, symbol: str) -> tuple[int, int, int, list[tuple[str, int]]]:
    """(supply, sum of balances, holders, non-positive balances) of an asset on one node, from the holders list."""
    supply = int(http.get(f"{api}/apps/assets/{symbol}").json()["supply"])
    total, count, bad = 0, 0, []
    after = ""
    while True:
        page = http.get(f"{api}/apps/assets/{symbol}/holders",
                        params={"limit": HOLDERS_PAGE, **({"after": after} if after else {})}).json()
        for row in page["holders"]:
            bal = row["balance"]
            if type(bal) is not int or bal <= 0:
                bad.append((row["account"], bal))
            else:
                total += bal
            count += 1
        if not page["next"]:
            return supply, total, count, bad
        after = page["next"]


def _stop_nodes(nodes: list[_Node]) -> None:
    """SIGTERM the run's own node processes, SIGKILL what has not stopped after 15 s."""
    for n in nodes:
        if n.proc is not None and n.proc.poll() is None:
            n.proc.terminate()
    for n in nodes:
        if n.proc is not None:
            try:
                n.proc.wait(15)
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait(5)


def format_report(r: SoakReport) -> str:
    """The run as markdown (docs/apps/payments.md shows one)."""
    c = r.config
    lines = [f"# qilian bench ledger — {c['validators']} validators, {c['duration_s']:.0f} s, "
             f"{'one validator SIGKILLed' if c['kill'] else 'no kill'}", "",
             f"Acknowledged {r.acknowledged:,} of {r.submitted:,} admitted transactions; {r.unresolved:,} "
             f"unresolved ({r.unresolved_committed:,} of them committed). Audited {r.nodes_checked} nodes to height "
             f"{r.height:,} in {r.elapsed_s:.0f} s." + (f" Killed {r.killed} at {r.killed_at_s} s, restarted at "
                                                         f"{r.restarted_at_s} s." if r.killed else ""), "",
             "| work | ok | failed (refused by the rules) |", "|---|---|---|"]
    lines += [f"| {k} | {x['ok']:,} | {x['failed']:,} |" for k, x in sorted(r.ops.items())]
    lines += ["", "| asset | minted | burned | supply | holders | sum of balances |", "|---|---|---|---|---|---|"]
    lines += [f"| {s} | {a['minted']:,} | {a['burned']:,} | {a['supply']:,} | {a['holders']:,} | "
              f"{a['sum_of_balances']:,} |" for s, a in sorted(r.assets.items())]
    lines += ["", "Invariants: " + ("all hold on every node." if r.ok else "VIOLATED:"), *r.violations, ""]
    return "\n".join(lines)
