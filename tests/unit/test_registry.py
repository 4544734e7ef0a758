"""Government registries on real blocks: a land registry approved by 2 of {land bureau, tax bureau, notary}; the
change applies exactly when the policy is met, with each department's vote and transaction recorded; rejections,
refusals of departments outside the policy, double votes and stale applications."""

from __future__ import annotations

import hashlib

from qilian.apps.registry.module import get_application, get_pending, get_record, get_version

from .appchain import AppChain

ORGS = ("land", "tax", "notary", "citizen")
DOC = hashlib.sha256(b"deed scan").digest()


def setup() -> AppChain:
    c = AppChain(ORGS)
    reg = c.ok("land-admin", "registry", "create", ["parcels", "2", ["land", "tax", "notary"]])
    assert reg["text"] == "2 of admin/member in land, notary, tax"
    return c


def change(holder: str, area: int = 120) -> dict[str, object]:
    return {"holder": holder, "attributes": {"parcel": "QD-001", "area_m2": area}, "documents": [DOC]}


def test_change_applies_when_two_departments_approve() -> None:
    c = setup()
    sub = c.ok("citizen-client", "registry", "submit", ["parcels", "QD-001", change("Wang Fang")])
    assert sub["status"] == "pending"
    assert get_pending(c.get_state, "parcels") == [sub["id"]]
    r = c.ok("land-client", "registry", "approve", [sub["id"], "survey checked"])
    assert r["status"] == "pending" and get_record(c.get_state, "parcels", "QD-001") is None
    r = c.ok("tax-admin", "registry", "approve", [sub["id"]])
    assert r == {"id": sub["id"], "status": "applied", "result": "version 1", "approved_by": ["land", "tax"],
                 "rejected_by": []}
    rec = get_record(c.get_state, "parcels", "QD-001")
    assert rec is not None and rec["holder"] == "Wang Fang" and rec["version"] == 1 and rec["documents"] == [DOC]
    v1 = get_version(c.get_state, "parcels", "QD-001", 1)
    assert v1 is not None and [v["org"] for v in v1["application"]["votes"]] == ["land", "tax"]
    assert all(len(v["tx_hash"]) == 32 for v in v1["application"]["votes"])
    assert get_pending(c.get_state, "parcels") == []
    assert "is applied" in c.fails("notary-admin", "registry", "approve", [sub["id"]])


def test_refusals_name_the_problem_and_write_nothing() -> None:
    c = setup()
    sub = c.ok("citizen-client", "registry", "submit", ["parcels", "QD-001", change("Wang Fang")])
    err = c.fails("citizen-admin", "registry", "approve", [sub["id"]])
    assert "citizen/admin may not decide on registry parcels: its policy is 2 of admin/member in land, notary, tax" \
        in err
    c.ok("land-admin", "registry", "approve", [sub["id"]])
    assert "department land has already decided" in c.fails("land-client", "registry", "approve", [sub["id"]])
    assert "no application 99" in c.fails("land-admin", "registry", "approve", [99])
    assert "no registry 'nope'" in c.fails("citizen-client", "registry", "submit", ["nope", "x", change("a")])
    assert "32-byte digests" in c.fails("citizen-client", "registry", "submit",
                                        ["parcels", "x", {"holder": "a", "documents": [b"short"]}])
    assert "exists already" in c.fails("land-admin", "registry", "create", ["parcels", "1", ["land"]])
    assert "unknown organisation 'mars'" in c.fails("land-admin", "registry", "create", ["r2", "1", ["mars"]])
    assert "needs 3 organisation(s) but only 2 are in scope" in c.fails("land-admin", "registry", "create",
                                                                         ["r3", "3", ["land", "tax"]])
    assert "policy registry.create is ANY of admin" in c.fails("land-client", "registry", "create",
                                                                ["r4", "1", ["land"]])


def test_rejection_once_the_policy_cannot_be_met_and_stale_applications() -> None:
    c = setup()
    a1 = c.ok("citizen-client", "registry", "submit", ["parcels", "QD-002", change("Li Lei")])["id"]
    c.ok("tax-admin", "registry", "reject", [a1, "unpaid deed tax"])
    r = c.ok("notary-admin", "registry", "reject", [a1, "signature missing"])
    assert r["status"] == "rejected" and r["rejected_by"] == ["notary", "tax"]
    app = get_application(c.get_state, a1)
    assert app is not None and "rejected by tax, notary" in app["result"]
    # two applications against version 0: the first applied makes the second stale
    b1 = c.ok("citizen-client", "registry", "submit", ["parcels", "QD-003", change("Han Mei")])["id"]
    b2 = c.ok("citizen-admin", "registry", "submit", ["parcels", "QD-003", change("Zhao Lei")])["id"]
    for org in ("land-admin", "notary-admin"):
        c.ok(org, "registry", "approve", [b1])
    c.ok("land-admin", "registry", "approve", [b2])
    r = c.ok("tax-admin", "registry", "approve", [b2])
    assert r["status"] == "superseded" and "submit again" in r["result"]
    rec = get_record(c.get_state, "parcels", "QD-003")
    assert rec is not None and rec["holder"] == "Han Mei"
    # the next version goes against version 1, and history keeps both
    b3 = c.ok("citizen-admin", "registry", "submit", ["parcels", "QD-003", change("Zhao Lei", 121)])["id"]
    c.ok("tax-admin", "registry", "approve", [b3])
    c.ok("notary-admin", "registry", "approve", [b3])
    v1, v2 = (get_version(c.get_state, "parcels", "QD-003", v) for v in (1, 2))
    assert v1 is not None and v2 is not None
    assert (v1["record"]["holder"], v2["record"]["holder"]) == ("Han Mei", "Zhao Lei")
    assert v2["approvers"] == ["notary", "tax"]
