"""A real N-validator network on loopback for fault tests: node processes, a bounded load generator and the
end-of-test audit (every acknowledged transaction on every node exactly once; all nodes agree on every block)."""

from __future__ import annotations

import random
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from qilian.node.config import init_network, load_genesis
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair, load_key
from qilian.types.codec import encode
from qilian.types.core import ChainParams, Transaction

from .conftest import NodeProc


def _ephemeral_low() -> int:
    """First port of the kernel's ephemeral range (outgoing connections take ports from it)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_block(n: int) -> int:
    """A base port with n consecutive free ports after it (for the API and for P2P), below the ephemeral range:
    a port probed free there can be taken by any outgoing connection on the machine before the node binds it
    ("address already in use" at node start: 3 times in ~30 runs on a busy shared machine)."""
    top = max(_ephemeral_low(), 20000 + 1000) - n - 1
    for _ in range(200):
        base = random.randint(20000, top)
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


@dataclass
class Net:
    root: Path
    nodes: list[NodeProc]
    client_key: KeyPair
    chain_id: str = "fault-chain"

    def start_all(self) -> None:
        """Start every node; if one fails to start, stop those already running (a fixture's ``finally`` is not
        reached when its setup raises, and they would run on, loading the machine, after the test)."""
        try:
            for n in self.nodes:
                n.start()
        except BaseException:
            self.stop_all()
            raise

    def stop_all(self) -> None:
        for n in self.nodes:
            n.stop()

    def live(self) -> list[NodeProc]:
        return [n for n in self.nodes if n.is_alive()]

    def height(self, node: NodeProc) -> int:
        return int(httpx.get(node.url + "/status", timeout=5).json()["height"])

    def wait_height(self, nodes: list[NodeProc], h: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self.height(n) >= h for n in nodes):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                heights = []
                for n in nodes:
                    try:
                        heights.append(self.height(n))
                    except httpx.HTTPError:
                        heights.append(-1)
                raise AssertionError(f"nodes did not reach height {h} in {timeout} s: {heights}")
            time.sleep(0.1)

    def wipe(self, i: int) -> None:
        shutil.rmtree(self.nodes[i].home / "data")


def make_net(tmp_path: Path, n: int = 4, suite: str = "ed25519", interval_ms: int = 100) -> Net:
    api = _free_block(n)
    p2p = _free_block(n)
    root = tmp_path / "net"
    init_network(root, n, chain_id="fault-chain", suite_name=suite, organisations=("org1", "org2"), api_port=api,
                 p2p_port=p2p, params=ChainParams(block_interval_ms=interval_ms),
                 timeouts={"propose_base_ms": 800, "propose_delta_ms": 300, "prevote_base_ms": 300,
                           "prevote_delta_ms": 300, "precommit_base_ms": 300, "precommit_delta_ms": 300})
    nodes = [NodeProc(root / f"node{i}", api + i) for i in range(n)]
    return Net(root, nodes, load_key(root / "keys" / "org1-client.pem"))


@dataclass
class Load:
    """Client threads sending kv.put with wait=commit to live nodes; bounded in count and time."""

    net: Net
    threads: int = 3
    max_per_thread: int = 3000
    acked: list[str] = field(default_factory=list)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for t in range(self.threads):
            w = threading.Thread(target=self._run, args=(t,), daemon=True)
            w.start()
            self._workers.append(w)

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(30)

    def _run(self, t: int) -> None:
        i = 0
        rng = random.Random(t)
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set() and i < self.max_per_thread:
                live = self.net.live()
                if not live:
                    time.sleep(0.1)
                    continue
                node = rng.choice(live)
                try:
                    h = self.net.height(node)
                    tx = build_tx(self.net.client_key, self.net.chain_id, "kv", "put",
                                  [f"t{t}-{i}", f"v{i}"], h + 500)
                    r = http.post(node.url + "/txs", params={"wait": "commit", "timeout": 5},
                                  content=tx.encode(), headers={"content-type": "application/octet-stream"})
                    self.sent += 1
                    if r.status_code == 200 and r.json()["status"] == "committed":
                        self.acked.append(r.json()["hash"])
                except httpx.HTTPError:
                    time.sleep(0.05)
                i += 1

    def wait_acked(self, more: int, timeout: float) -> None:
        target = len(self.acked) + more
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            assert time.monotonic() < deadline, f"only {len(self.acked)} of {target} transactions acknowledged"
            time.sleep(0.1)


def audit(net: Net, acked: list[str], nodes: list[NodeProc] | None = None) -> int:
    """All nodes agree on every block ID and state root up to the lowest height; every acknowledged transaction
    is in exactly one block of that common chain. Returns the common height."""
    nodes = nodes or net.live()
    genesis = load_genesis(nodes[0].home / "genesis.json")
    assert genesis.chain_id == net.chain_id
    with httpx.Client(timeout=10) as http:
        top = min(int(http.get(n.url + "/status").json()["height"]) for n in nodes)
        seen: dict[str, int] = {}
        for h in range(1, top + 1):
            views = [http.get(f"{n.url}/blocks/{h}").json() for n in nodes]
            ids = {v["header"]["block_id"] for v in views}
            roots = {v["header"]["state_root"] for v in views}
            assert len(ids) == 1, f"nodes disagree on block {h}: {ids}"
            assert len(roots) == 1, f"nodes disagree on the state root in block {h}"
            for tx in views[0]["txs"]:
                assert tx["hash"] not in seen, f"transaction {tx['hash']} in blocks {seen[tx['hash']]} and {h}"
                seen[tx["hash"]] = h
        missing = [a for a in acked if a not in seen]
        # Acknowledged after the common height: must still be on every node that has them.
        for a in missing:
            for n in nodes:
                r = http.get(f"{n.url}/txs/{a}")
                assert r.status_code == 200, f"acknowledged transaction {a} missing on {n.home.name}"
    return top


def post_batches(http: httpx.Client, url: str, txs: list[Transaction], size: int = 200) -> None:
    """POST /txs/batch in chunks; every transaction must be admitted."""
    for i in range(0, len(txs), size):
        r = http.post(url + "/txs/batch", content=encode([t.encode() for t in txs[i:i + size]]),
                      headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200 and not r.json()["rejected"], r.text[:500]


def wait_committed(http: httpx.Client, url: str, hashes: set[str], timeout: float) -> None:
    """Wait (deadline-bound) until every hash is a committed transaction on the node at ``url``."""
    pending = set(hashes)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for h in list(pending)[:200]:
            if http.get(f"{url}/txs/{h}").status_code == 200:
                pending.discard(h)
        if pending:
            time.sleep(0.3)
    assert not pending, f"{len(pending)} of {len(hashes)} transactions not committed in {timeout:.0f} s"
