"""The copyright module on real blocks over a dict state: registration numbers, the same content as a later
claim (never silently first), holder-only transfers and grants, exclusive grants that may not overlap, disputes
under their policy."""

from __future__ import annotations

from typing import Any

import pytest

from qilian.apps.copyright.module import get_registrations, get_work
from qilian.execution.rules import TxRejected, check_tx_static
from qilian.sdk.client import build_tx

from .appchain import ADMIN, CHAIN, CLIENT, RULES, SUITE, AppChain
from .blockrunner import failed, ok

SONG = SUITE.hash(b"a song")




def work(digest: bytes = SONG, **kw: Any) -> dict[str, Any]:
    return {"title": "Song of Qilian", "digests": [digest], "authors": ["Li Bai"], "created": "2025-04-01",
            "licence": {"terms": "all-rights-reserved", "text": ""}, **kw}


def grant(org: str, kind: str, territory: str = "CN", start: int = 0, end: int = 1000) -> dict[str, Any]:
    return {"licensee": org, "kind": kind, "territory": territory, "from": start, "to": end, "terms": ""}


def test_registration_transfer_chain_and_later_claims() -> None:
    s = AppChain()
    assert ok(s.one(CLIENT["farm"], "copyright", "register", [work()])) == {
        "number": 1, "id": "QC-00000001", "status": "first", "prior": []}
    failed(s.one(ADMIN["farm"], "copyright", "register", [work()]), "already registered by farm as QC-00000001")
    # another organisation registering the same content is recorded, as a later claim naming the first
    assert ok(s.one(CLIENT["retailer"], "copyright", "register", [work(title="Mine")]))["prior"] == ["QC-00000001"]
    assert get_work(s.get, 2)["status"] == "later_claim"  # type: ignore[index]
    assert get_registrations(s.get, SONG) == [1, 2]

    failed(s.one(CLIENT["processor"], "copyright", "transfer", ["QC-00000001", "processor", ""]),
           "held by farm", "only a key of the holder")
    ok(s.one(CLIENT["farm"], "copyright", "transfer", ["QC-00000001", "processor", "contract 7"]))
    failed(s.one(CLIENT["farm"], "copyright", "transfer", [1, "retailer", ""]), "held by processor")
    ok(s.one(CLIENT["processor"], "copyright", "transfer", [1, "distributor", ""]))
    rec = get_work(s.get, 1)
    assert rec is not None and rec["holder"] == "distributor" and rec["registrant"] == "farm" and rec["n"] == 3
    failed(s.one(CLIENT["distributor"], "copyright", "transfer", [9, "farm", ""]), "no registration QC-00000009")


def test_grants_and_disputes() -> None:
    s = AppChain()
    ok(s.one(CLIENT["farm"], "copyright", "register", [work()]))
    ok(s.one(CLIENT["farm"], "copyright", "license", [1, grant("processor", "exclusive", "CN", 0, 100)]))
    failed(s.one(CLIENT["farm"], "copyright", "license", [1, grant("retailer", "non-exclusive", "CN", 50, 60)]),
           "conflicts with the exclusive grant to processor")
    failed(s.one(CLIENT["farm"], "copyright", "license", [1, grant("retailer", "exclusive", "worldwide", 90, 200)]),
           "conflicts")
    ok(s.one(CLIENT["farm"], "copyright", "license", [1, grant("retailer", "non-exclusive", "HK", 0, 100)]))
    ok(s.one(CLIENT["farm"], "copyright", "license", [1, grant("retailer", "exclusive", "CN", 101, 200)]))
    failed(s.one(CLIENT["retailer"], "copyright", "license", [1, grant("retailer", "non-exclusive")]), "held by farm")
    # disputes: an admin by default policy; a client is refused; while disputed, no transfer or grant
    failed(s.one(CLIENT["retailer"], "copyright", "dispute", [1, "plagiarism"]), "policy copyright.dispute")
    ok(s.one(ADMIN["retailer"], "copyright", "dispute", [1, "plagiarism claim 2025-17"]))
    failed(s.one(CLIENT["farm"], "copyright", "transfer", [1, "processor", ""]), "is disputed", "plagiarism")
    failed(s.one(ADMIN["retailer"], "copyright", "dispute", [1, "again"]), "already disputed")
    ok(s.one(ADMIN["retailer"], "copyright", "clear", [1, "settled"]))
    ok(s.one(CLIENT["farm"], "copyright", "transfer", [1, "processor", ""]))


@pytest.mark.parametrize(("method", "args", "words"), [
    ("register", [{"title": "x"}], "needs digests"),
    ("register", [work(licence={"terms": "gpl", "text": ""})], "not one of"),
    ("register", [work(digest=b"short")], "16..64 bytes"),
    ("register", [{**work(), "price": 5}], "no field 'price'"),
    ("license", [1, grant("retailer", "sole")], "exclusive or non-exclusive"),
    ("license", [1, grant("retailer", "exclusive", "China")], "ISO 3166"),
    ("license", [1, grant("retailer", "exclusive", "CN", 10, 5)], "to (height)"),
    ("transfer", ["QC-x", "retailer", ""], "registration number"),
])
def test_malformed_calls_are_refused_at_admission(method: str, args: list[Any], words: str) -> None:
    tx = build_tx(CLIENT["farm"], CHAIN, "copyright", method, args, 10, nonce=1)
    with pytest.raises(TxRejected) as info:
        check_tx_static(RULES, tx, len(tx.encode()))
    assert words in info.value.message
