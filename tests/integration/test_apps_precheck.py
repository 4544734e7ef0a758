"""Issue 17's refusals before a failed receipt: a payments, identity or registry call the latest state already
refuses is answered by ``POST /<module>/check`` with a 422 naming the problem, and the CLI asks it first — so it
exits 1 with that reason and no transaction reaches the chain (one node, four organisations)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qilian.sdk.keys import load_key
from qilian.types.codec import to_json_value

from .apputil import OrgChain

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[OrgChain]:
    c = OrgChain(tmp_path, ("land", "tax", "notary", "bank"))
    c.node.start()
    try:
        yield c
    finally:
        c.node.stop()


def _check(c: OrgChain, key: str, module: str, method: str, args: list[Any]) -> httpx.Response:
    pub = load_key(Path(c.key(key))).public_key.hex()
    return httpx.post(f"{c.node.url}/{module}/check", json={"method": method, "args": to_json_value(args),
                                                           "sender": pub}, timeout=30)


def _committed(c: OrgChain) -> int:
    return int(c.get("/status")["txs_committed"])


def test_refused_before_sending(chain: OrgChain) -> None:
    c = chain
    a, b = c.addr("bank-client"), c.addr("land-client")
    c.cli("asset", "create", "CNY", "Renminbi", "2", "--key", c.key("bank-admin"))
    c.cli("asset", "mint", "CNY", a, "100", "--key", c.key("bank-admin"))
    c.cli("registry", "create", "parcels", "2", "--dept", "land", "--dept", "tax", "--dept", "notary",
          "--key", c.key("land-admin"))
    c.cli("registry", "submit", "parcels", "QD-1", "--holder", "Wang", "--key", c.key("bank-client"))
    c.cli("asset", "create", "HKD", "Hong Kong dollar", "2", "--key", c.key("bank-admin"))
    c.cli("settle", "quote", "CNY", "HKD", "11", "10", "--blocks", "1", "--key", c.key("bank-admin"))
    before = _committed(c)

    # the CLI names each problem and sends nothing
    assert "refused: asset.transfer: insufficient balance" in c.refused(
        "asset", "transfer", "CNY", b, "500", "--key", c.key("bank-client"))
    assert "refused: registry.approve: bank/client may not decide on registry parcels" in c.refused(
        "registry", "approve", "1", "--key", c.key("bank-client"))
    assert "refused: asset.mint: no asset 'USD'" in c.refused("asset", "mint", "USD", a, "1", "--key",
                                                            c.key("bank-admin"))
    # the one-block quote has expired by now (its own block, then the ones above)
    assert "refused: settle.fx_pay: quote 1 expired" in c.refused("settle", "pay", "1", "10", b, "--key",
                                                                 c.key("bank-client"))
    assert _committed(c) == before, "a refused call reached the chain"

    # the routes themselves, for any client
    nobody = "did:qilian:" + "ab" * 20
    r = _check(c, "bank-client", "did", "deactivate", [nobody, nobody + "#key-1", b""])
    assert r.status_code == 422 and f"unknown DID {nobody}" in r.json()["message"]
    r = _check(c, "bank-client", "asset", "transfer", ["CNY", b, 40, ""])
    assert r.status_code == 200 and r.json()["result"] == {"balance": 60}  # what the call would return
    r = httpx.post(f"{c.node.url}/registry/check", json={"method": "approve"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"] == "malformed"
    assert _committed(c) == before
