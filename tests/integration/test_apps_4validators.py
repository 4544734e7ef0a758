"""The scenario walkthroughs on a real 4-validator network of 4 organisations (one validator each, spread over
the orgs by init_network), each organisation talking to its own node: the trace walkthrough (farm → processor →
distributor → retailer, one recall) and the registry's 2-of-3 department approval. What the single-node
walkthroughs show must survive consensus: custody moves across nodes, refusals are named before anything is sent
(``POST /<module>/check`` on whichever node), the certificate from one node checks offline against genesis, and
every node ends with the same blocks and state roots."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qilian.apps.trace.sdk import check_certificate, make_event
from qilian.node.config import init_network, load_genesis
from qilian.sdk.client import Client
from qilian.sdk.keys import KeyPair, load_key
from qilian.types.core import ChainParams

from .conftest import NodeProc
from .netutil import Net, _free_block, audit

pytestmark = pytest.mark.timeout(180)

ORGS = ("farm", "processor", "distributor", "retailer")
LOT = "urn:epc:class:lgtin:0614141.107346.2025B"
EGGS = [f"urn:epc:id:sgtin:0614141.107346.{i}" for i in range(11, 14)]
CASE = "urn:epc:id:sscc:0614141.2234567890"
T = "2025-05-02T08:00:00Z"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    api, p2p = _free_block(4), _free_block(4)
    root = tmp_path / "net"
    init_network(root, 4, chain_id="fault-chain", suite_name="ed25519", organisations=ORGS, api_port=api,
                 p2p_port=p2p, params=ChainParams(block_interval_ms=100),
                 timeouts={"propose_base_ms": 800, "propose_delta_ms": 300, "prevote_base_ms": 300,
                           "prevote_delta_ms": 300, "precommit_base_ms": 300, "precommit_delta_ms": 300})
    n = Net(root, [NodeProc(root / f"node{i}", api + i) for i in range(4)], load_key(root / "keys" / "farm-client.pem"))
    n.start_all()
    try:
        n.wait_height(n.nodes, 1, 30)
        yield n
    finally:
        n.stop_all()


def _key(net: Net, name: str) -> KeyPair:
    return load_key(net.root / "keys" / f"{name}.pem")


def _send(net: Net, node: int, key: KeyPair, module: str, method: str, args: list[Any]) -> dict[str, Any]:
    """Pre-check on the organisation's node (as the CLI does), then send and wait for the commit. The node is
    first let catch up with the others: a pre-check reads that node's latest state."""
    _caught_up(net, node)
    url = net.nodes[node].url
    r = httpx.post(f"{url}/{module}/check", json={"method": method, "args": _json(args),
                                                  "sender": key.public_key.hex()}, timeout=30)
    assert r.status_code == 200, r.text
    res = Client(url).call(key, module, method, args)
    assert res["status"] == "committed" and res["receipt"]["status"] == "ok", res
    return res


def _caught_up(net: Net, node: int) -> None:
    net.wait_height([net.nodes[node]], max(net.height(n) for n in net.nodes), 20)


def _refused(net: Net, node: int, key: KeyPair, module: str, method: str, args: list[Any]) -> str:
    _caught_up(net, node)
    r = httpx.post(f"{net.nodes[node].url}/{module}/check",
                   json={"method": method, "args": _json(args), "sender": key.public_key.hex()}, timeout=30)
    assert r.status_code == 422, r.text
    return str(r.json()["message"])


def _json(args: list[Any]) -> Any:
    from qilian.types.codec import to_json_value

    return to_json_value(args)


def _seen_everywhere(net: Net, height: int) -> None:
    net.wait_height(net.nodes, height, 20)


def test_trace_walkthrough_on_four_validators(net: Net) -> None:
    start = time.monotonic()
    farm, proc, dist, shop = (_key(net, f"{o}-client") for o in ORGS)
    _send(net, 0, farm, "trace", "commission", [make_event("commission", T, EGGS, ilmd={"lotNumber": LOT})])
    ship = make_event("ship", T, EGGS[:2], destinationList=[{"type": "owning_party", "destination": "processor"}])
    h = _send(net, 0, farm, "trace", "ship", [ship])["height"]
    _seen_everywhere(net, h)
    # the processor, on its own node, may not ship what is still in transit to it
    assert "in transit" in _refused(net, 1, proc, "trace", "ship", [
        make_event("ship", T, EGGS[:1], destinationList=[{"type": "owning_party", "destination": "retailer"}])])
    _send(net, 1, proc, "trace", "receive", [make_event("receive", T, EGGS[:2])])
    _send(net, 1, proc, "trace", "aggregate", [make_event("pack", T, None, parentID=CASE, childEPCs=EGGS[:2])])
    _send(net, 1, proc, "trace", "ship", [make_event("ship", T, [CASE], destinationList=[
        {"type": "owning_party", "destination": "distributor"}])])
    _send(net, 2, dist, "trace", "receive", [make_event("receive", T, [CASE])])
    _send(net, 2, dist, "trace", "ship", [make_event("ship", T, [CASE], destinationList=[
        {"type": "owning_party", "destination": "retailer"}])])
    h = _send(net, 3, shop, "trace", "receive", [make_event("receive", T, [CASE])])["height"]
    _seen_everywhere(net, h)
    loc = httpx.get(f"{net.nodes[0].url}/trace/item", params={"id": EGGS[0]}).json()["location"]
    assert loc["custodian"] == "retailer" and loc["container"] == CASE  # packed items moved with the case
    # only the lot's organisation may recall it; its admin does, from the farm's node
    assert "(owner farm)" in _refused(net, 3, _key(net, "retailer-admin"), "trace", "recall", [LOT, "not ours"])
    r = _send(net, 0, _key(net, "farm-admin"), "trace", "recall", [LOT, "salmonella in flock 7"])
    assert r["receipt"]["result"]["recall"] == 1
    assert r["receipt"]["result"]["marked"] >= 3  # three eggs (and the case holding two of them)
    h = Client(net.nodes[0].url).call(farm, "kv", "put", ["after", "recall"])["height"]  # proves the recall
    _seen_everywhere(net, h)

    # the retailer's node certifies the egg; the certificate checks offline against the genesis alone
    cert = httpx.get(f"{net.nodes[3].url}/trace/certificate", params={"id": EGGS[0]}, timeout=30).json()
    checked = check_certificate(cert, load_genesis(net.root / "genesis.json"))
    # the egg travels inside the case: its own record names the case; the case's proven record the retailer
    assert checked.record["parent"] == CASE and checked.record["recalled"] == 1
    assert checked.related[CASE][0]["custodian"] == "retailer"
    assert [(s.method, s.org) for s in checked.steps] == [("commission", "farm"), ("ship", "farm"),
                                                          ("receive", "processor"), ("aggregate", "processor"),
                                                          ("recall", "farm")]
    assert {s.org for _, steps in checked.related.values() for s in steps} >= {"processor", "distributor", "retailer"}
    audit(net, [])
    assert time.monotonic() - start < 60


def test_registry_two_of_three_on_four_validators(net: Net) -> None:
    start = time.monotonic()
    # departments: farm, processor, distributor (2 of 3); retailer applies and is not a department
    _send(net, 0, _key(net, "farm-admin"), "registry", "create",
           ["licences", "2", ["farm", "processor", "distributor"]])
    change = {"holder": "Retail Co", "attributes": {"class": "food"}, "documents": []}
    h = _send(net, 3, _key(net, "retailer-client"), "registry", "submit", ["licences", "R-1", change])["height"]
    _seen_everywhere(net, h)
    assert "may not decide" in _refused(net, 3, _key(net, "retailer-admin"), "registry", "approve", [1, "self"])
    assert "no application 9" in _refused(net, 2, _key(net, "distributor-client"), "registry", "approve", [9, ""])
    r = _send(net, 0, _key(net, "farm-client"), "registry", "approve", [1, "ok"])
    assert r["receipt"]["result"]["status"] == "pending"
    _seen_everywhere(net, r["height"])
    assert "already decided" in _refused(net, 1, _key(net, "farm-admin"), "registry", "approve", [1, ""])
    r = _send(net, 1, _key(net, "processor-client"), "registry", "approve", [1, ""])
    assert r["receipt"]["result"]["status"] == "applied"
    _seen_everywhere(net, r["height"])
    for n in net.nodes:  # every node shows the record and both approvals
        hist = httpx.get(f"{n.url}/apps/registry/licences/records/R-1/history").json()
        assert hist[0]["record"]["holder"] == "Retail Co"
        assert [v["org"] for v in hist[0]["application"]["votes"]] == ["farm", "processor"]
    audit(net, [])
    assert time.monotonic() - start < 60
