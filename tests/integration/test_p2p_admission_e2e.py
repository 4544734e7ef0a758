"""P2P admission follows chain state, on real processes: a fifth organisation joins a running 4-validator network
with only the genesis and one seed address.

1. The joining node (``org keygen`` + ``node join``: genesis + seed, no peer list, no trust bundle) is refused by the
   seed while its key is no member — it stays at height 0;
2. ``org.add`` (offline endorsements of 3 of 4 organisations) registers its node key: the seed admits it, it syncs
   from genesis; once its organisation registers its endpoint (``node.endpoint``, SELF) every validator links to it
   (the validators' own endpoints are chain state too, so the joiner dials them all);
3. ``validator.update`` adds it: it signs commits from two blocks after the deciding one;
4. removed again (``validator.update`` power 0, then ``org.remove``): every validator drops the link and refuses
   its redials, and the chain keeps committing under load throughout."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from qilian.bench.join import execute_endorsed, get_height, get_signers, make_joiner, register_endpoints, wait_until
from qilian.node.config import init_network, load_config
from qilian.sdk.keys import load_key
from qilian.types.core import ChainParams

from .conftest import NodeProc
from .netutil import Load, Net, _free_block, audit

pytestmark = pytest.mark.timeout(300)

ORGS = ("org1", "org2", "org3", "org4")
TIMEOUTS = {"propose_base_ms": 800, "propose_delta_ms": 300, "prevote_base_ms": 300, "prevote_delta_ms": 300,
            "precommit_base_ms": 300, "precommit_delta_ms": 300}


def _status(api: str) -> dict[str, object]:
    return dict(httpx.get(api + "/status", timeout=5).json())


def test_a_fifth_org_joins_with_genesis_and_a_seed_and_is_dropped_when_removed(tmp_path: Path) -> None:
    api, p2p = _free_block(5), _free_block(5)
    root = tmp_path / "net"
    init_network(root, 4, chain_id="fault-chain", suite_name="ed25519", organisations=ORGS, api_port=api,
                 p2p_port=p2p, params=ChainParams(block_interval_ms=100), timeouts=TIMEOUTS)
    nodes = [NodeProc(root / f"node{i}", api + i) for i in range(4)]
    net = Net(root, nodes, load_key(root / "keys" / "org1-client.pem"))
    admins = [load_key(root / "keys" / f"{o}-admin.pem") for o in ORGS]
    url = nodes[0].url
    joiner = make_joiner(tmp_path, "epsilon", "ed25519", root / "genesis.json", f"127.0.0.1:{p2p}", api + 4,
                         p2p + 4, TIMEOUTS)
    jproc = NodeProc(joiner.home, api + 4)
    load = Load(net, threads=2)
    try:
        net.start_all()
        net.wait_height(nodes, 1, 30)
        # the validators' endpoints become chain state, each set by its own organisation (SELF)
        register_endpoints(url, [(admins[i], load_key(n.home / "keys" / f"node{i}.pem").public_key,
                                  f"127.0.0.1:{load_config(n.home).p2p_port}") for i, n in enumerate(nodes)])
        doc = httpx.get(url + "/gov/nodes").json()
        assert sorted(n["endpoint"] for n in doc["nodes"]) == sorted(f"127.0.0.1:{p2p + i}" for i in range(4))
        load.start()

        # 1. not a member yet: the seed refuses it; it stays at height 0
        refused0 = int(_status(url)["p2p_refused"])
        jproc.start()
        wait_until("the seed to refuse the unregistered node", lambda: int(_status(url)["p2p_refused"]) > refused0,
                   20)
        assert _status(joiner.api)["peers"] == [] and get_height(joiner.api) == 0

        # 2. org.add by 3 of 4 organisations (offline endorsements): admitted, syncs from genesis
        execute_endorsed(url, admins[0], admins[1:3], joiner.org_add_action())
        tip = get_height(url)
        wait_until("the joiner to sync", lambda: get_height(joiner.api) >= tip, 60)
        execute_endorsed(url, joiner.admin, (), ["node.endpoint", joiner.node_key.public_key, joiner.p2p])
        wait_until("the joiner to link to all four validators", lambda: len(_status(joiner.api)["peers"]) == 4,
                   30)  # type: ignore[arg-type]
        for n in nodes:
            wait_until(f"{n.home.name} to link to the joiner",
                       lambda n=n: "epsilon/epsilon-node0" in _status(n.url)["peers"], 30)  # type: ignore[operator]
        assert all(n["connected"] or n["self"] for n in httpx.get(joiner.api + "/gov/nodes").json()["nodes"])

        # 3. voted in as validator: signs from decided + 2
        res = execute_endorsed(url, admins[0], admins[1:3], ["validator.update", [[joiner.node_key.public_key, 1]]])
        decided = int(res["height"])
        addr = joiner.node_key.address.hex()
        wait_until("the new validator to sign a commit",
                   lambda: any(addr in get_signers(url, h) for h in range(decided + 2, get_height(url) + 1)), 60)
        assert addr not in get_signers(url, decided + 1)
        load.wait_acked(10, 60)

        # 4. removed by governance: dropped by every validator and refused when it redials
        execute_endorsed(url, admins[0], admins[1:3], ["validator.update", [[joiner.node_key.public_key, 0]]])
        net.wait_height(nodes, get_height(url) + 3, 30)
        refused = [int(_status(n.url)["p2p_refused"]) for n in nodes]
        execute_endorsed(url, admins[0], admins[1:3], ["org.remove", "epsilon"])
        for n in nodes:
            wait_until(f"{n.home.name} to drop the removed node",
                       lambda n=n: "epsilon/epsilon-node0" not in _status(n.url)["peers"], 30)  # type: ignore[operator]
        wait_until("the removed node to lose every link", lambda: _status(joiner.api)["peers"] == [], 30)
        stuck = get_height(joiner.api)
        wait_until("its redials to be refused", lambda: all(
            int(_status(n.url)["p2p_refused"]) > r for n, r in zip(nodes, refused, strict=True)), 30)
        h = get_height(url)
        net.wait_height(nodes, h + 5, 30)
        assert _status(joiner.api)["peers"] == [] and get_height(joiner.api) <= stuck + 1
        load.wait_acked(10, 60)
    finally:
        load.stop()
        jproc.stop()
    audit(net, load.acked)
    net.stop_all()
