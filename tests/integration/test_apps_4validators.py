"""The scenario walkthroughs on a real 4-validator network of 4 organisations (one validator each, spread over
the orgs by init_network), each organisation talking to its own node: the trace walkthrough (farm → processor →
distributor → retailer, one recall), the registry's 2-of-3 department approval, IoT readings anchored and one
proven offline, a copyright transfer chain, a DID with a credential verified and revoked, and payments (DvP swap,
escrow, holders list with proofs). What the single-node
walkthroughs show must survive consensus: custody moves across nodes, refusals are named before anything is sent
(``POST /<module>/check`` on whichever node), the certificate from one node checks offline against genesis, and
every node ends with the same blocks and state roots."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qilian.apps.iot.sdk import sign_reading
from qilian.apps.payments.module import ESCROW_ACCOUNT, compute_signed_offer
from qilian.apps.trace.sdk import check_certificate, make_event
from qilian.node.config import init_network, load_genesis
from qilian.sdk.client import Client
from qilian.sdk.keys import KeyPair, generate_key, load_key, save_key
from qilian.types.core import ChainParams

from .apputil import out, run_cli
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
    n = _start_net(tmp_path)
    try:
        n.wait_height(n.nodes, 1, 30)
        yield n
    finally:
        n.stop_all()


def _start_net(tmp_path: Path) -> Net:
    """The four organisations' network on free ports; another process on this shared machine may take a port
    between the choice and the bind, so that (and only that) is retried on fresh ports."""
    for attempt in range(3):
        api, p2p = _free_block(4), _free_block(4)
        root = tmp_path / f"net{attempt}"
        init_network(root, 4, chain_id="fault-chain", suite_name="ed25519", organisations=ORGS, api_port=api,
                     p2p_port=p2p, params=ChainParams(block_interval_ms=100),
                     timeouts={"propose_base_ms": 800, "propose_delta_ms": 300, "prevote_base_ms": 300,
                               "prevote_delta_ms": 300, "precommit_base_ms": 300, "precommit_delta_ms": 300})
        n = Net(root, [NodeProc(root / f"node{i}", api + i) for i in range(4)],
                load_key(root / "keys" / "farm-client.pem"))
        try:
            n.start_all()
            return n
        except RuntimeError as exc:
            n.stop_all()
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


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


def _cli(net: Net, node: int, *args: str, check: bool = True) -> Any:
    """A ``qilian`` command against organisation ``node``'s node (``node=-1``: offline), the network root as home."""
    _caught_up(net, max(node, 0))
    return run_cli(net.root, net.nodes[node].url if node >= 0 else None, *args, check=check)


def _tick(net: Net, node: int = 0) -> None:
    """One more committed block, so the state of the last one is in a header every node has (proofs are one
    block behind)."""
    _seen_everywhere(net, Client(net.nodes[node].url).call(_key(net, "farm-client"), "kv", "put", ["tick", "tock"]
                                                           )["height"])


def test_iot_walkthrough_on_four_validators(net: Net, tmp_path: Path) -> None:
    start = time.monotonic()
    dev = generate_key("ed25519")
    save_key(dev, tmp_path / "dev.pem")
    # the farm registers its sensor on its node; the processor, on its own node, may not retire it
    _send(net, 0, _key(net, "farm-admin"), "iot", "add_device", ["farm-sensor-1", "ed25519", dev.public_key])
    _seen_everywhere(net, net.height(net.nodes[0]))
    assert "belongs to farm" in _refused(net, 1, _key(net, "processor-admin"), "iot", "retire_device",
                                            ["farm-sensor-1"])
    now = int(time.time() * 1000)
    lines = []
    for seq in range(1000):
        r = {"device": "farm-sensor-1", "seq": seq, "t": now - 60_000 + seq, "values": {"temp": f"4.{seq % 10}"}}
        lines.append(json.dumps({"reading": r, "sig": sign_reading("ed25519", dev.private_key, r).hex()}))
    readings = tmp_path / "readings.jsonl"
    readings.write_text("\n".join(lines) + "\n")
    store = tmp_path / "store"
    # the farm's gateway anchors through the distributor's node; the retailer's node proves one reading
    p = _cli(net, 2, "iot", "anchor", str(readings), "--store", str(store), "--key", str(net.root / "keys" /
                                                                                          "farm-client.pem"))
    assert "1000 reading(s) of 1 device(s)" in out(p)
    _tick(net, 2)
    proof = tmp_path / "proof.json"
    _cli(net, 3, "iot", "prove", "farm-sensor-1:421", "--store", str(store), "--out", str(proof))
    p = _cli(net, -1, "iot", "check", str(proof), "--genesis", str(net.root / "genesis.json"))
    assert "VALID" in out(p) and "anchored by farm" in out(p)
    doc = json.loads(proof.read_text())
    doc["reading"]["values"]["temp"] = "9.9"
    proof.write_text(json.dumps(doc))
    p = _cli(net, -1, "iot", "check", str(proof), "--genesis", str(net.root / "genesis.json"), check=False)
    assert p.returncode == 2 and "not in the anchored batch" in out(p)
    audit(net, [])
    assert time.monotonic() - start < 60


def test_copyright_walkthrough_on_four_validators(net: Net, tmp_path: Path) -> None:
    start = time.monotonic()
    song = tmp_path / "song.flac"
    song.write_bytes(b"fLaC" + bytes(range(256)) * 8)
    p = _cli(net, 0, "copyright", "register", str(song), "--title", "Song of Qilian", "--author", "Li Bai",
             "--licence", "cc-by", "--key", str(net.root / "keys" / "farm-client.pem"))
    assert "registered QC-00000001" in out(p)
    farm, proc, dist = (_key(net, f"{o}-client") for o in ("farm", "processor", "distributor"))
    _send(net, 0, farm, "copyright", "transfer", [1, "processor", "contract 7"])
    # the farm no longer holds it: refused on the processor's node too, before anything is sent
    assert "held by processor" in _refused(net, 1, farm, "copyright", "transfer", [1, "retailer", ""])
    grant = {"licensee": "retailer", "kind": "non-exclusive", "territory": "CN", "from": 1, "to": 2**62, "terms": ""}
    _send(net, 1, proc, "copyright", "license", [1, grant])
    _send(net, 1, proc, "copyright", "transfer", [1, "distributor", ""])
    _send(net, 3, _key(net, "retailer-admin"), "copyright", "dispute", [1, "claim 17"])
    assert "is disputed (claim 17)" in _refused(net, 2, dist, "copyright", "transfer", [1, "farm", ""])
    _send(net, 3, _key(net, "retailer-admin"), "copyright", "clear", [1, "withdrawn"])
    _tick(net, 3)
    cert = tmp_path / "cert.json"
    _cli(net, 3, "copyright", "certificate", "1", "--out", str(cert))
    p = _cli(net, -1, "copyright", "check", str(cert), "--genesis", str(net.root / "genesis.json"))
    assert "VALID" in out(p) and "holder distributor" in out(p)
    assert "transfer farm → processor" in out(p) and "transfer processor → distributor" in out(p)
    audit(net, [])
    assert time.monotonic() - start < 60


def test_identity_walkthrough_on_four_validators(net: Net, tmp_path: Path) -> None:
    start = time.monotonic()
    save_key(generate_key("ed25519"), tmp_path / "uni-did.pem")
    did_key, farm = str(tmp_path / "uni-did.pem"), str(net.root / "keys" / "farm-client.pem")
    # the farm (here: the issuing university) creates its DID on its node; the retailer's node resolves it
    did = _cli(net, 0, "did", "create", "--did-key", did_key, "--key", farm).stdout.strip()
    _tick(net)
    res = json.loads(_cli(net, 3, "did", "resolve", did).stdout)
    assert res["proven"] is True and res["didDocument"]["id"] == did
    body = tmp_path / "degree.json"
    body.write_text(json.dumps({"type": ["DegreeCredential"], "validFrom": "2025-06-30T00:00:00Z",
                                "credentialSubject": {"id": "did:qilian:" + "12" * 20, "degree": "BSc"}}))
    cred = tmp_path / "cred.json"
    _cli(net, 0, "vc", "issue", str(body), "--issuer", did, "--did-key", did_key, "--status-index", "42",
         "--out", str(cred))
    # the company verifies on the distributor's node; the university revokes through the processor's
    assert "VALID: issued by " + did in out(_cli(net, 2, "vc", "verify", str(cred)))
    _cli(net, 1, "vc", "revoke", str(cred), "--did-key", did_key, "--key", farm)
    _tick(net, 1)
    p = _cli(net, 2, "vc", "verify", str(cred), check=False)
    assert p.returncode == 2 and "revoked (status list revocation, index 42" in out(p)
    audit(net, [])
    assert time.monotonic() - start < 60


def test_payments_walkthrough_on_four_validators(net: Net) -> None:
    start = time.monotonic()
    farm, proc, dist = (_key(net, f"{o}-client") for o in ("farm", "processor", "distributor"))
    _send(net, 0, _key(net, "farm-admin"), "asset", "create", ["CNY", "Renminbi", 2])
    _send(net, 1, _key(net, "processor-admin"), "asset", "create", ["HKD", "Hong Kong dollar", 2])
    _send(net, 0, _key(net, "farm-admin"), "asset", "mint", ["CNY", farm.address.hex(), 100_000])
    h = _send(net, 1, _key(net, "processor-admin"), "asset", "mint", ["HKD", proc.address.hex(), 50_000])["height"]
    _seen_everywhere(net, h)
    assert "insufficient balance" in _refused(net, 2, dist, "asset", "transfer", ["CNY", farm.address.hex(), 1])
    assert "policy asset.issue" in _refused(net, 3, _key(net, "retailer-admin"), "asset", "mint",
                                            ["CNY", dist.address.hex(), 5])
    _send(net, 0, farm, "asset", "transfer", ["CNY", dist.address.hex(), 2_500, "invoice 42"])
    # DvP: the processor offers 1,000 HKD for 900 CNY; the farm takes it on the distributor's node
    tip = net.height(net.nodes[2])
    offer = compute_signed_offer(proc.suite, proc.private_key, proc.public_key, "fault-chain",
                                 ["HKD", 1_000, "CNY", 900, farm.address.hex(), tip + 50, 7])
    _send(net, 2, farm, "settle", "swap", offer)
    assert "already taken" in _refused(net, 3, farm, "settle", "swap", offer)
    # escrow through the retailer's node, released by the payer on its own node
    r = _send(net, 3, farm, "settle", "escrow", ["CNY", 5_000, dist.address.hex(), 50, "bill of lading"])
    _send(net, 0, farm, "settle", "release", [r["receipt"]["result"]["id"]])
    _tick(net)
    # the holders list, each balance proven against genesis, from the retailer's node: balances sum to supply
    doc = json.loads(_cli(net, 3, "asset", "holders", "CNY", "--verify").stdout)
    got = {h["account"]: h["proven_balance"] for h in doc["holders"]}
    assert got == {farm.address.hex(): 100_000 - 2_500 - 900 - 5_000, dist.address.hex(): 2_500 + 5_000,
                   proc.address.hex(): 900}
    assert ESCROW_ACCOUNT not in got and sum(got.values()) == doc["supply"] == 100_000 and doc["next"] is None
    pages, after = [], ""  # the same list in pages of two, through the API of the processor's node
    while True:
        page = httpx.get(f"{net.nodes[1].url}/apps/assets/CNY/holders", params={"limit": 2, "after": after}).json()
        pages.append([h["account"] for h in page["holders"]])
        if not page["next"]:
            break
        after = page["next"]
    assert pages == [sorted(got)[:2], sorted(got)[2:]]
    hkd = httpx.get(f"{net.nodes[1].url}/apps/assets/HKD/holders").json()
    assert {h["account"]: h["balance"] for h in hkd["holders"]} == {proc.address.hex(): 49_000,
                                                                  farm.address.hex(): 1_000}
    audit(net, [])
    assert time.monotonic() - start < 60
