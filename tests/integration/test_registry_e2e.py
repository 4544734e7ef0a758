"""A land registry on a real chain of four organisations (land bureau, tax bureau, notary, a citizen's bank; one
validator node), through the real CLI and API: 2-of-3 department approval, a department outside the policy
refused, rejection, the record proven against genesis and its history with every decision proven by its signed
transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .apputil import OrgChain, out

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[OrgChain]:
    c = OrgChain(tmp_path, ("land", "tax", "notary", "bank"))
    c.node.start()
    try:
        yield c
    finally:
        c.node.stop()


def test_registry_walkthrough(chain: OrgChain, tmp_path: Path) -> None:
    c = chain
    p = c.cli("registry", "create", "parcels", "2", "--dept", "land", "--dept", "tax", "--dept", "notary",
              "--key", c.key("land-admin"))
    assert "changes need 2 of admin/member in land, notary, tax" in out(p)
    deed = tmp_path / "deed.pdf"
    deed.write_bytes(b"%PDF deed of parcel QD-001")
    p = c.cli("registry", "submit", "parcels", "QD-001", "--holder", "Wang Fang", "--attr", "area_m2=int:120",
              "--attr", "district=Shinan", "--doc", str(deed), "--key", c.key("bank-client"))
    assert "application 1: pending" in out(p)
    pend = json.loads(c.cli("registry", "pending", "parcels", "--department", "tax").stdout)
    assert [a["id"] for a in pend] == [1]
    assert "bank/client may not decide on registry parcels" in c.refused("registry", "approve", "1", "--key",
                                                                         c.key("bank-client"))
    p = c.cli("registry", "approve", "1", "--note", "survey ok", "--key", c.key("land-client"))
    assert "application 1: pending (approved by land" in out(p)
    assert "department land has already decided" in c.refused("registry", "approve", "1", "--key",
                                                              c.key("land-admin"))
    assert json.loads(c.cli("registry", "pending", "parcels", "--department", "land").stdout) == []
    p = c.cli("registry", "approve", "1", "--key", c.key("tax-client"))
    assert "application 1: applied (approved by land, tax" in out(p)

    # a second application is rejected by two departments: it can no longer reach 2 approvals
    c.cli("registry", "submit", "parcels", "QD-001", "--holder", "Li Lei", "--key", c.key("bank-client"))
    c.cli("registry", "reject", "2", "--reason", "no deed", "--key", c.key("notary-admin"))
    p = c.cli("registry", "reject", "2", "--reason", "unpaid tax", "--key", c.key("tax-admin"))
    assert "application 2: rejected" in out(p)
    assert "is rejected" in c.refused("registry", "approve", "2", "--key", c.key("land-admin"))
    assert httpx.get(f"{c.node.url}/apps/registry/nope").status_code == 404
    assert httpx.get(f"{c.node.url}/apps/registry/parcels/pending", params={"department": "bank"}).status_code == 400

    c.cli("tx", "send", "kv", "put", "tick", "tock", "--key", c.key("bank-client"))
    shown = json.loads(c.cli("registry", "show", "parcels", "QD-001").stdout)
    assert shown["record"]["holder"] == "Wang Fang" and shown["record"]["version"] == 1
    assert shown["record"]["attributes"] == {"area_m2": 120, "district": "Shinan"}
    hist = json.loads(c.cli("registry", "history", "parcels", "QD-001").stdout)
    assert len(hist) == 1
    votes = hist[0]["application"]["votes"]
    assert [v["org"] for v in votes] == ["land", "tax"]
    assert votes[0]["proven"].startswith("signed by land/client, in block")
    assert votes[1]["proven"].startswith("signed by tax/client, in block")
    assert "no record QD-404" in c.refused("registry", "show", "parcels", "QD-404")
