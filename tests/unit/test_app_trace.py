"""The trace module on real blocks over a dict state: custody (only the custodian ships, only the destination
receives), duplicate commission, malformed events refused at admission, packing and transformation, and a recall
that finds every derived item and aggregate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qilian.apps.trace.epcis import compute_event_bytes, compute_event_hash
from qilian.apps.trace.module import (
    TRACE_NAMESPACE,
    compute_item_key,
    compute_recall_key,
    get_entries,
    get_item,
    get_location,
)
from qilian.crypto import get_suite
from qilian.execution.rules import TxRejected, check_tx_static
from qilian.sdk.client import build_tx

from .appchain import ADMIN, CHAIN, CLIENT, RULES, SUITE, AppChain
from .blockrunner import failed, ok

T = "2025-05-01T08:00:00+08:00"
LOT = "urn:epc:class:lgtin:0614141.107346.2025A"
EGG = [f"urn:epc:id:sgtin:0614141.107346.{i}" for i in range(1, 6)]
CASE = "urn:epc:id:sscc:0614141.1234567890"


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"eventTime": T}
    shapes = {"commission": ("ObjectEvent", "ADD", "commissioning"), "ship": ("ObjectEvent", "OBSERVE", "shipping"),
              "receive": ("ObjectEvent", "OBSERVE", "receiving"), "observe": ("ObjectEvent", "OBSERVE", "inspecting"),
              "pack": ("AggregationEvent", "ADD", "packing"), "unpack": ("AggregationEvent", "DELETE", "unpacking"),
              "transform": ("TransformationEvent", None, "transforming"),
              "decommission": ("ObjectEvent", "DELETE", "decommissioning")}
    t, action, step = shapes[kind]
    base.update(type=t, bizStep=step)
    if action:
        base["action"] = action
    base.update(fields)
    return base


def ship_to(org: str, ids: list[str]) -> dict[str, Any]:
    return ev("ship", epcList=ids, destinationList=[{"type": "owning_party", "destination": org}])




@pytest.fixture
def s() -> AppChain:
    st = AppChain()
    ok(st.one(CLIENT["farm"], "trace", "commission", [ev("commission", epcList=EGG, ilmd={"lotNumber": LOT})]))
    return st


def test_custody_ship_receive_and_refusals_write_nothing(s: AppChain) -> None:
    # only the custodian ships: the processor cannot ship the farm's eggs
    before = dict(s.values)
    failed(s.one(CLIENT["processor"], "trace", "ship", [ship_to("retailer", EGG[:1])]),
           "in the custody of farm, not processor", "only the current custodian may ship")
    failed(s.one(CLIENT["farm"], "trace", "ship", [ship_to("farm", EGG[:1])]), "the shipper itself")
    failed(s.one(CLIENT["farm"], "trace", "ship", [ship_to("nobody", EGG[:1])]), "not an organisation")
    failed(s.one(CLIENT["farm"], "trace", "ship", [ship_to("processor", ["urn:farm:egg:999"])]),
           "unknown item 'urn:farm:egg:999'")
    failed(s.one(CLIENT["farm"], "trace", "commission", [ev("commission", epcList=EGG[:1])]),
           "duplicate commission", "by farm")
    assert s.values == before  # every refusal left the state as it was

    res = ok(s.one(CLIENT["farm"], "trace", "ship", [ship_to("processor", EGG[:2])]))
    assert res["to"] == "processor"
    # a third party cannot take delivery; the farm cannot ship again while in transit
    failed(s.one(CLIENT["distributor"], "trace", "receive", [ev("receive", epcList=EGG[:1])]),
           "not in transit to distributor")
    failed(s.one(CLIENT["farm"], "trace", "ship", [ship_to("retailer", EGG[:1])]), "in transit to processor")
    assert get_location(s.get, EGG[0]) == {"id": EGG[0], "custodian": "farm", "status": "in_transit",
                                           "to": "processor", "container": "", "lot": LOT, "recalled": 0}
    ok(s.one(CLIENT["processor"], "trace", "receive", [ev("receive", epcList=EGG[:2])]))
    assert get_location(s.get, EGG[0])["custodian"] == "processor"
    item = get_item(s.get, EGG[0])
    assert item is not None and item["n"] == 3 and item["owner"] == "farm"
    assert [e[2] for e in get_entries(s.get, EGG[0], item["n"])] == [1, 7, 10]


@pytest.mark.parametrize(("method", "event", "words"), [
    ("commission", {"type": "ObjectEvent"}, "eventTime"),
    ("commission", "not a map", "an event is a map"),
    ("ship", {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping", "eventTime": T,
              "epcList": EGG[:1]}, "destinationList"),
    ("commission", {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning", "eventTime": T,
                    "epcList": ["urn:epc:id:sgtin:0614141.10734.1"]}, "13 digits"),
    ("commission", {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning", "eventTime": T,
                    "epcList": ["no spaces allowed"]}, "not an identifier"),
    ("commission", {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning", "eventTime": T,
                    "epcList": EGG[:1], "colour": "brown"}, "no field 'colour'"),
    ("observe", {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "inspecting", "eventTime": T,
                 "epcList": EGG[:1], "sensorElementList": [{"sensorReport": [{"type": "Temperature",
                                                                              "value": "4.5x"}]}]},
     "decimal string"),
    ("observe", {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping", "eventTime": T,
                 "epcList": EGG[:1]}, "own command"),
    ("commission", {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning", "eventTime": "yesterday",
                    "epcList": EGG[:1]}, "RFC 3339"),
    ("commission", {"type": "ObjectEvent", "action": "ADD", "bizStep": "commissioning", "eventTime": T,
                    "epcList": [EGG[0], EGG[0]]}, "twice"),
])
def test_malformed_events_are_refused_at_admission(method: str, event: Any, words: str) -> None:
    tx = build_tx(CLIENT["farm"], CHAIN, "trace", method, [event], 10, nonce=1)
    with pytest.raises(TxRejected) as info:
        check_tx_static(RULES, tx, len(tx.encode()))
    assert info.value.code == "bad_event" and words in info.value.message


def test_sensor_values_are_integers_or_decimal_strings(s: AppChain) -> None:
    obs = ev("observe", epcList=EGG[:1], sensorElementList=[{"sensorReport": [
        {"type": "Temperature", "value": "4.5", "uom": "CEL"}, {"type": "Humidity", "value": 63, "uom": "A93"}]}])
    ok(s.one(CLIENT["distributor"], "trace", "observe", [obs]))  # an inspector of another organisation observes
    assert get_item(s.get, EGG[0])["n"] == 2  # type: ignore[index]


def test_packing_moves_custody_with_the_container(s: AppChain) -> None:
    ok(s.one(CLIENT["farm"], "trace", "aggregate", [ev("pack", parentID=CASE, childEPCs=EGG[:3])]))
    failed(s.one(CLIENT["farm"], "trace", "ship", [ship_to("processor", EGG[:1])]), "packed in", "unpack it first")
    failed(s.one(CLIENT["farm"], "trace", "aggregate", [ev("pack", parentID=EGG[3], childEPCs=EGG[4:])]),
           "is an item, not an aggregate")
    ok(s.one(CLIENT["farm"], "trace", "ship", [ship_to("distributor", [CASE])]))
    assert get_location(s.get, EGG[0])["status"] == "in_transit"  # type: ignore[index]
    ok(s.one(CLIENT["distributor"], "trace", "receive", [ev("receive", epcList=[CASE])]))
    loc = get_location(s.get, EGG[0])
    assert loc is not None and loc["custodian"] == "distributor" and loc["container"] == CASE
    failed(s.one(CLIENT["farm"], "trace", "aggregate", [ev("unpack", parentID=CASE, childEPCs=EGG[:1])]),
           "custody of distributor")
    ok(s.one(CLIENT["distributor"], "trace", "aggregate", [ev("unpack", parentID=CASE, childEPCs=EGG[:1])]))
    assert get_location(s.get, EGG[0]) == {"id": EGG[0], "custodian": "distributor", "status": "active", "to": "",
                                           "container": "", "lot": LOT, "recalled": 0}
    assert get_item(s.get, EGG[0])["containers"] == [CASE]  # type: ignore[index]


def test_recall_finds_every_derived_item_and_aggregate(s: AppChain) -> None:
    other_lot = "urn:epc:class:lgtin:0614141.107346.2025B"
    flour = "urn:mill:flour:1"
    ok(s.one(CLIENT["farm"], "trace", "commission", [ev("commission", epcList=[flour], ilmd={"lotNumber": other_lot})]))
    ok(s.one(CLIENT["farm"], "trace", "ship", [ship_to("processor", [*EGG[:4], flour])]))
    ok(s.one(CLIENT["processor"], "trace", "receive", [ev("receive", epcList=[*EGG[:4], flour])]))
    # cakes made from eggs 1-2 and flour; a tart from egg 3; cakes packed into a case; a gift box from a cake
    cakes = ["urn:bakery:cake:1", "urn:bakery:cake:2"]
    ok(s.one(CLIENT["processor"], "trace", "transform", [ev("transform", inputEPCList=[*EGG[:2], flour],
                                                            outputEPCList=cakes)]))
    ok(s.one(CLIENT["processor"], "trace", "transform", [ev("transform", inputEPCList=EGG[2:3],
                                                            outputEPCList=["urn:bakery:tart:1"])]))
    ok(s.one(CLIENT["processor"], "trace", "transform", [ev("transform", inputEPCList=cakes[1:],
                                                            outputEPCList=["urn:bakery:giftbox:1"])]))
    ok(s.one(CLIENT["processor"], "trace", "aggregate", [ev("pack", parentID=CASE, childEPCs=cakes[:1])]))
    ok(s.one(CLIENT["processor"], "trace", "aggregate",
             [ev("pack", parentID="urn:epc:id:sscc:0614141.9999999999", childEPCs=[CASE])]))
    unrelated = "urn:bakery:bread:1"
    ok(s.one(CLIENT["processor"], "trace", "commission", [ev("commission", epcList=[unrelated])]))

    # a recall is the lot owner's (SELF of admin): the processor's admin and the farm's client are refused
    failed(s.one(ADMIN["processor"], "trace", "recall", [LOT, "salmonella"]), "policy trace.recall", "owner farm")
    failed(s.one(CLIENT["farm"], "trace", "recall", [LOT, "salmonella"]), "policy trace.recall")
    res = ok(s.one(ADMIN["farm"], "trace", "recall", [LOT, "salmonella in flock 7"]))
    assert res["recall"] == 1
    rec = s.record(TRACE_NAMESPACE, compute_recall_key(1))
    expected = {*EGG, *cakes, "urn:bakery:tart:1", "urn:bakery:giftbox:1", CASE,
                "urn:epc:id:sscc:0614141.9999999999"}
    assert set(rec["marked"]) == expected and res["marked"] == len(expected)
    assert rec["sources"] == [flour]  # followed backward, reported, not marked
    for item_id in expected:
        assert get_item(s.get, item_id)["recalled"] == 1  # type: ignore[index]
    for item_id in (flour, unrelated):
        assert get_item(s.get, item_id)["recalled"] == 0  # type: ignore[index]
    failed(s.one(ADMIN["farm"], "trace", "recall", [LOT, "again"]), "already recalled")
    failed(s.one(CLIENT["farm"], "trace", "commission", [ev("commission", epcList=["urn:farm:egg:new"],
                                                           ilmd={"lotNumber": LOT})]), "is recalled")


def test_history_hash_chain_matches_entries(s: AppChain) -> None:
    from qilian.apps.base import ZERO_HEAD, compute_chain_head

    ok(s.one(CLIENT["farm"], "trace", "ship", [ship_to("processor", EGG[:1])]))
    item = s.record(TRACE_NAMESPACE, compute_item_key(EGG[0]))
    head = ZERO_HEAD
    for entry, tx_hash, _ in get_entries(s.get, EGG[0], item["n"]):
        head = compute_chain_head(SUITE.hash, head, entry, tx_hash)
    assert head == item["head"]


VECTORS = Path(__file__).parent.parent / "vectors" / "trace_events.json"


def test_event_hash_vectors() -> None:
    """The documented canonical bytes and hashes of sample events (what another SDK must reproduce)."""
    doc = json.loads(VECTORS.read_text())
    assert len(doc["vectors"]) >= 3
    for v in doc["vectors"]:
        assert compute_event_bytes(v["event"]).hex() == v["canonical_hex"]
        for suite in ("sm2", "ed25519"):
            assert compute_event_hash(get_suite(suite).hash, v["event"]).hex() == v["hash"][suite]
