"""Evidence on chain between real processes: three validator processes run; the test plays the fourth with its
real keys over a real TLS connection and double-votes. The running nodes detect the equivocation, gossip the
evidence, commit it, list it at ``GET /evidence`` and show it in the block — the same bytes on every node — and
``qilian verify-ledger`` re-checks it from genesis on each node. A forged evidence item cuts the sender off."""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.execution.evidence import make_evidence
from qilian.p2p.messages import EvidenceMsg, Hello, encode_message
from qilian.sdk.client import Client
from qilian.sdk.keys import load_key
from qilian.types.core import PREVOTE, Vote, compute_vote_sign_bytes

from .netutil import Net, make_net
from .test_p2p_hostile import _connect, _is_closed_by_peer, _violations

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def three_of_four(tmp_path: Path) -> Iterator[Net]:
    """Four configured validators, three running: the test plays the fourth."""
    n = make_net(tmp_path)
    for node in n.nodes[:3]:
        node.start()
    try:
        yield n
    finally:
        n.stop_all()


def test_a_double_vote_is_committed_as_evidence_on_every_node(three_of_four: Net) -> None:
    net = three_of_four
    running = net.nodes[:3]
    net.wait_height(running, 1, 30)
    node3 = net.nodes[3].home
    key = load_key(node3 / "keys" / "node3.pem")

    def vote(height: int, block_id: bytes) -> Vote:
        sig = key.suite.sign(key.private_key, compute_vote_sign_bytes(net.chain_id, PREVOTE, height, 0, block_id))
        return Vote(PREVOTE, height, 0, block_id, key.address, sig)

    async def send(writer: asyncio.StreamWriter, msg: object) -> None:
        body = encode_message(msg)  # type: ignore[arg-type]
        writer.write(struct.pack(">I", len(body)) + body)
        await writer.drain()

    async def double_vote() -> int:
        _r, w, hello = await _connect(net, node3 / "tls", node3 / "keys" / "node3.pem")
        assert isinstance(hello, Hello)
        h = net.height(net.nodes[0]) + 1
        await send(w, vote(h, b""))
        await send(w, vote(h, b"\x42" * 32))  # the same (height, round, type), another value: equivocation
        await asyncio.sleep(1)
        w.close()
        return h

    h = asyncio.run(double_vote())
    # Work for the next heights: the evidence of height h goes into a block above h.
    c = Client(net.nodes[0].url)
    deadline = time.monotonic() + 90
    docs: list[dict] = []
    while time.monotonic() < deadline:
        c.call(net.client_key, "kv", "put", ["tick", str(time.monotonic())])
        docs = [httpx.get(f"{n.url}/evidence", timeout=5).json() for n in running]
        if all(d["items"] for d in docs):
            break
    assert all(d["items"] for d in docs), f"evidence not committed on every node: {docs}"
    items = [d["items"] for d in docs]
    assert items[0] == items[1] == items[2] and len(items[0]) == 1
    item = items[0][0]
    assert (item["validator"], item["height"], item["round"], item["kind"]) == (key.address.hex(), h, 0, "prevote")
    assert sorted(item["block_ids"]) == ["", "42" * 32]
    at = item["committed_at"]
    assert at > h
    top = max(net.height(n) for n in running)
    net.wait_height(running, top, 30)
    blocks = [httpx.get(f"{n.url}/blocks/{at}", timeout=5).json() for n in running]
    assert len({b["header"]["encoded"] for b in blocks}) == 1
    assert [e["hash"] for e in blocks[0]["evidence"]] == [item["hash"]]
    assert len({tuple(e["encoded"] for e in b["evidence"]) for b in blocks}) == 1

    async def forged() -> None:
        before = _violations(net)
        r, w, hello = await _connect(net, node3 / "tls", node3 / "keys" / "node3.pem")
        assert isinstance(hello, Hello)
        good = make_evidence(vote(top, b""), vote(top, b"\x43" * 32))
        bad = dataclasses.replace(good, vote_b=dataclasses.replace(good.vote_b, signature=b"\x01" * 64))
        await send(w, EvidenceMsg((bad,)))
        assert await _is_closed_by_peer(r), "node 0 kept a peer that sent forged evidence"
        w.close()
        assert _violations(net) == before + 1

    asyncio.run(forged())
    for n in running:
        n.stop()
    for n in running:
        out = subprocess.run([sys.executable, "-m", "qilian.cli.main", "verify-ledger", "--home", str(n.home)],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{n.home.name}: {out.stdout}{out.stderr}"
