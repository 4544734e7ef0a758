"""Four real validator processes on loopback under continuous transaction load, with real faults: SIGKILL,
restart, a wiped data directory, SIGSTOP/SIGCONT, and losing two of four. After each: every transaction
acknowledged as committed is on every node exactly once and all nodes agree on every block and state root."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.node.config import load_config, save_config
from qilian.sdk.keys import load_key

from .netutil import Load, Net, audit, make_net

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = make_net(tmp_path)
    n.start_all()
    try:
        yield n
    finally:
        n.stop_all()


def _signers_of_commit(net: Net, node_url: str, height: int) -> set[str]:
    c = httpx.get(f"{node_url}/blocks/{height}", timeout=5).json()["commit"]
    return {s["validator"] for s in c["signatures"]}


def test_kill_restart_and_wiped_node_resyncs_and_votes(net: Net) -> None:
    load = Load(net)
    load.start()
    try:
        load.wait_acked(20, 60)
        # SIGKILL one of four: the other three hold > 2/3 of the power and keep committing.
        net.nodes[3].kill()
        h_kill = net.height(net.nodes[0])
        load.wait_acked(30, 60)
        net.wait_height(net.nodes[:3], h_kill + 3, 30)

        # Restart it: it catches up from its peers and takes part again.
        net.nodes[3].start()
        net.wait_height([net.nodes[3]], net.height(net.nodes[0]), 60)

        # Wipe another node's data directory and restart it: it resyncs the whole chain unattended…
        net.nodes[2].kill()
        net.wipe(2)
        load.wait_acked(10, 60)
        net.nodes[2].start()
        net.wait_height([net.nodes[2]], net.height(net.nodes[0]), 60)

        # …and votes again: with node 1 gone, no block can be decided without node 2's precommit.
        net.nodes[1].kill()
        h = net.height(net.nodes[0])
        load.wait_acked(10, 90)
        net.wait_height([net.nodes[0], net.nodes[2], net.nodes[3]], h + 2, 60)
        addr2 = load_key(net.nodes[2].home / "keys" / "node2.pem").address.hex()
        assert addr2 in _signers_of_commit(net, net.nodes[0].url, h + 1)
    finally:
        load.stop()
    net.nodes[1].start()
    top = net.height(net.nodes[0])
    net.wait_height(net.nodes, top, 60)
    common = audit(net, load.acked, net.nodes)
    assert common >= top and len(load.acked) >= 70


def test_sigstop_then_sigcont(net: Net) -> None:
    load = Load(net)
    load.start()
    try:
        load.wait_acked(10, 60)
        victim = net.nodes[1]
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGSTOP)
        try:
            h = net.height(net.nodes[0])
            time.sleep(3)  # frozen, not dead: its sockets stay open and its peers' frames pile up
            net.wait_height([net.nodes[0], net.nodes[2], net.nodes[3]], h + 3, 60)
        finally:
            victim.proc.send_signal(signal.SIGCONT)
        net.wait_height([victim], net.height(net.nodes[0]), 60)
        load.wait_acked(10, 60)
    finally:
        load.stop()
    net.wait_height(net.nodes, net.height(net.nodes[0]), 60)
    audit(net, load.acked, net.nodes)


def test_two_of_four_down_halts_without_fork_then_resumes(net: Net) -> None:
    load = Load(net)
    load.start()
    try:
        load.wait_acked(10, 60)
        net.nodes[2].kill()
        net.nodes[3].kill()
        time.sleep(2)  # a block already decided may still commit
        h0 = net.height(net.nodes[0])
        acked0 = len(load.acked)
        time.sleep(4)
        # Half the power cannot decide anything: no block, no acknowledgement.
        assert net.height(net.nodes[0]) == h0 and net.height(net.nodes[1]) <= h0
        assert len(load.acked) == acked0
        # A crash while stuck mid-height: the node replays its WAL back into the same round state and re-sends
        # the very votes it had signed (the persisted signer guard would refuse any different one).
        net.nodes[0].kill()
        net.nodes[0].start()
        assert "WAL records for height" in net.nodes[0].log_path.read_text()
        net.nodes[2].start()
        net.wait_height([net.nodes[0], net.nodes[1], net.nodes[2]], h0 + 2, 90)
        load.wait_acked(10, 60)
    finally:
        load.stop()
    net.nodes[3].start()
    net.wait_height(net.nodes, net.height(net.nodes[0]), 60)
    audit(net, load.acked, net.nodes)
    for n in net.nodes:
        log = n.log_path.read_text()
        assert "signer guard" not in log and "equivocation" not in log, n.home.name


def _block_links(net: Net, pairs: list[tuple[int, int]]) -> None:
    """Cut single links: each end of each pair neither dials nor accepts the other (``[p2p] blocked_peers``)."""
    blocked: dict[int, list[str]] = {}
    for a, b in pairs:
        blocked.setdefault(a, []).append(f"node{b}")
        blocked.setdefault(b, []).append(f"node{a}")
    for i, names in blocked.items():
        cfg = load_config(net.nodes[i].home)
        save_config(dataclasses.replace(cfg, blocked_peers=tuple(names)))


def test_ring_partition_keeps_committing(tmp_path: Path) -> None:
    """Jepsen finding: cutting the links 0–1 and 2–3 of four validators leaves every node reaching 2 of its 3
    peers. With proposals, votes and their transactions relayed, the chain keeps committing."""
    net = make_net(tmp_path)
    _block_links(net, [(0, 1), (2, 3)])
    net.start_all()
    load = Load(net)
    load.start()
    try:
        for i, node in enumerate(net.nodes):
            peers = httpx.get(node.url + "/status", timeout=5).json()["peers"]
            assert f"node{i ^ 1}" not in peers, f"node{i} is linked to node{i ^ 1} despite the cut"
        load.wait_acked(20, 90)
        h = net.height(net.nodes[0])
        net.wait_height(net.nodes, h + 5, 60)
        load.wait_acked(20, 60)
    finally:
        load.stop()
        try:
            net.wait_height(net.nodes, net.height(net.nodes[0]), 60)
            audit(net, load.acked, net.nodes)
        finally:
            net.stop_all()
